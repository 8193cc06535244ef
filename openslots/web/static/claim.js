// The claim page's "viewed" beacon: a scanner that fetches the link runs no script, so only a
// page shown in a browser marks the offer viewed. Nothing about the browser is sent.
(function () {
  var form = document.getElementById("claim");
  var url = form && form.getAttribute("data-viewed");
  if (!url) {
    return;
  }
  if (navigator.sendBeacon && navigator.sendBeacon(url)) {
    return;
  }
  if (window.fetch) {
    fetch(url, { method: "POST", credentials: "omit", keepalive: true });
  }
})();
