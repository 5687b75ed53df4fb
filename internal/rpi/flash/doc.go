// Package flash writes a golden image to SD cards (or image files), many at
// once, and proves each card holds it.
//
// Only the blocks the image's block map lists are written (bmaptool's XML
// format 2.0, parsed here, file checksum included), with large aligned
// O_DIRECT writes. The first MiB (MBR and partition table) is zeroed before
// anything else and the image's own first MiB is written last, so a card
// whose write stops early has no partition table and cannot boot half
// written. After an fsync every mapped range is read back from the device
// with O_DIRECT, bypassing the page cache, and its sha256 compared with the
// block map's. Then the node's seed overlay is written into the FAT boot
// partition through go-diskfs (no mount) and read back after the device's
// buffers are dropped. A card is reported done only when all of that
// verified; a card that failed or was interrupted after its partition table
// was written gets the table cleared again.
//
// Before writing, Inspect and Check refuse the disk holding /, disks with a
// mounted or swapping partition or one held by LVM, dm or RAID, partitions,
// non-removable disks unless allowed, devices smaller than the image and
// regular files (unless writing to files was asked for).
package flash
