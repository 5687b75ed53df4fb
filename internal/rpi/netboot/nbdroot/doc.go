// Package nbdroot gives every netbooted Raspberry Pi its own copy-on-write
// root disk on top of the golden image, served over NBD.
//
// # Layout
//
// One qcow2 overlay per Pi, <Dir>/<node>.qcow2, made with
//
//	qemu-img create -f qcow2 -F raw -b /abs/golden.img <Dir>/<node>.qcow2 [SIZE]
//
// Its backing file is the golden image by absolute path; qemu opens a
// backing file read-only, so the golden image never changes (the tests
// compare its sha256 before and after a write through every export). The
// Pi's writes, /var/lib/docker included, land in its overlay: a block
// device holding the golden image's ext4 root, which is what Docker's
// overlay2 needs (it refuses NFS). The overlay is a file in the state
// directory and survives reboots of the Pi and of the server;
// Reset throws it away and starts the Pi from the golden image again.
// <Dir>/<node>.json records the export's port and the golden image the
// overlay was made from (size and modification time): an overlay whose
// golden image has changed since is refused, not served, because its
// blocks would no longer match (reset it).
//
// # Server: one qemu-nbd per Pi
//
// Each overlay is exported by its own
//
//	qemu-nbd --persistent --shared=N --format=qcow2 --bind ADDR --port P \
//	    --export-name NODE --pid-file <Dir>/<node>.pid <Dir>/<node>.qcow2
//
// Why qemu-nbd, and why one per Pi:
//   - nbd-server cannot do it: it reads raw files only, and its
//     copyonwrite option keeps a client's writes in a temporary file that
//     is dropped when the client disconnects (not persistent); a
//     persistent root per Pi would need a full 3 GiB copy per Pi.
//   - qemu-nbd serves a qcow2 overlay with its backing chain, takes qemu's
//     image locks (a second writer of an overlay is refused, and Reset can
//     ask whether an overlay is in use across processes), honours flush
//     and trim, and with --persistent keeps serving after a client goes.
//   - One process per Pi rather than one qemu-storage-daemon with one
//     export per Pi: resetting or restarting one Pi's root touches no other
//     Pi, a crash loses one root rather than a rack, and supervision is a
//     process per export (here, or a systemd template unit) instead of
//     a QMP client. A qemu-nbd serving an idle overlay has about 8 MiB
//     resident (VmRSS, measured here; much of it shared libraries); ports
//     are allocated once per Pi from BasePort up and kept in the node's
//     .json, so adding a rack moves nobody.
//
// The export name is the node name, so a client asking for the wrong
// Pi's root on a port is refused. The Pi's kernel command line points at
// it with Debian's nbd-client initramfs syntax (Export.KernelArgs):
//
//	nbdroot=SERVER:PORT/NODE root=/dev/nbd0 (or /dev/nbd0pN for a disk image)
//
// The root file system's image must carry nbd-client in its initramfs
// (Debian's nbd-client package; its script runs nbd-client with -persist,
// which reconnects when an export is restarted).
//
// # The proof
//
// internal/rpi/cmd/netboot-test (make netboot-test) boots the golden
// image's kernel and initramfs under qemu-system-aarch64 -M virt with its
// root on a Pi's export through qemu's own NBD client: the guest sees a
// virtio disk whose every block comes over NBD from the overlay, which is
// an honest stand-in for the Pi's kernel NBD client (same server, same
// export, same overlay; only the client differs — this host's kernel has
// no nbd module).
package nbdroot
