"""The virtual lab: QEMU guests that PXE-boot the real live image from a real dnsmasq,
inside a network namespace vet creates and removes (`vet lab up|down|status`)."""
