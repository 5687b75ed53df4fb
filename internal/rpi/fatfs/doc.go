// Package fatfs holds what provision does to a FAT boot partition beyond
// go-diskfs: reading and writing whole files through a go-diskfs file
// system, and repairing what go-diskfs (v1.9.4) leaves wrong in a FAT32 file
// system it changed, so that fsck.fat -n reports it clean.
package fatfs
