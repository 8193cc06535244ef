"""Every boundary with the outside world: database, roster files, email, SMS."""
