"""The lab: the whole product on one machine, against podman container nodes."""
