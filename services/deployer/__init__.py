"""deployer: promotes exactly the approved artifact; never one that was rejected or failed its checks."""

SERVICE = "deployer"
