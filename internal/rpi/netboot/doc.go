// Package netboot boots Raspberry Pi 4s over the network: a TFTP server of
// its own (RFC 1350 read requests with RFC 2347 option negotiation, 2348
// blksize, 2349 tsize and timeout, 7440 windowsize) serving each Pi's boot
// files from its serial-number (or MAC) directory straight out of the golden
// image's FAT partition, with cmdline.txt and config.txt generated per node;
// a proxy-DHCP responder (or, on an isolated boot network, a DHCP server
// with the inventory's static leases) that answers only the Pi bootloader;
// and boot events (DHCP seen, file served, unknown serial) kept in the
// state directory for `provision netboot status` and the discover stage.
//
// The root file systems (NBD exports) are package netboot/nbdroot's.
package netboot
