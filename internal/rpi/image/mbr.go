package image

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

const (
	sectorSize = 512
	mib        = 1 << 20

	// MBR partition types a Pi image uses.
	typeFAT32LBA = 0x0c
	typeFAT32CHS = 0x0b
	typeFAT16LBA = 0x0e
	typeLinux    = 0x83
)

// Partition is one primary MBR partition.
type Partition struct {
	Number int    `json:"number"` // 1..4
	Type   byte   `json:"type"`
	Start  int64  `json:"start"` // bytes
	Size   int64  `json:"size"`  // bytes
	Label  string `json:"label,omitempty"`
}

// End is the first byte after the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

func (p Partition) isFAT() bool {
	return p.Type == typeFAT32LBA || p.Type == typeFAT32CHS || p.Type == typeFAT16LBA
}

// MBR is what provision reads of a disk's master boot record.
type MBR struct {
	DiskID     uint32
	Partitions []Partition
}

// PartUUID is the PARTUUID Linux gives partition n of this disk: 8 hex
// digits of the disk identifier, a dash and the two-digit number.
func (m MBR) PartUUID(n int) string { return fmt.Sprintf("%08x-%02d", m.DiskID, n) }

// readMBR reads and checks the partition table of the image at path, whose
// size is size. A table that lies (a partition past the end of the image,
// partitions overlapping, a partition starting in the MBR) is an error: the
// image is truncated or not what it claims to be.
func readMBR(f io.ReaderAt, size int64, name string) (MBR, error) {
	var b [sectorSize]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return MBR{}, fmt.Errorf("%s: read the partition table: %w", name, err)
	}
	if b[510] != 0x55 || b[511] != 0xaa {
		return MBR{}, fmt.Errorf("%s: no MBR partition table (no 55AA signature at byte 510): not a Raspberry Pi disk image", name)
	}
	m := MBR{DiskID: binary.LittleEndian.Uint32(b[440:444])}
	for i := range 4 {
		e := b[446+16*i : 446+16*(i+1)]
		typ := e[4]
		start := int64(binary.LittleEndian.Uint32(e[8:12])) * sectorSize
		n := int64(binary.LittleEndian.Uint32(e[12:16])) * sectorSize
		if typ == 0 || n == 0 {
			continue
		}
		if typ == 0xee {
			return MBR{}, fmt.Errorf("%s: a GPT disk (protective MBR); Raspberry Pi images use an MBR table", name)
		}
		p := Partition{Number: i + 1, Type: typ, Start: start, Size: n}
		if start < sectorSize {
			return MBR{}, fmt.Errorf("%s: partition %d starts at byte %d, inside the partition table: the table is corrupt", name, p.Number, start)
		}
		if p.End() > size {
			return MBR{}, fmt.Errorf("%s: partition %d ends at byte %d but the image has %d bytes: the table lies or the image is truncated", name, p.Number, p.End(), size)
		}
		for _, q := range m.Partitions {
			if p.Start < q.End() && q.Start < p.End() {
				return MBR{}, fmt.Errorf("%s: partitions %d (bytes %d-%d) and %d (bytes %d-%d) overlap: the table is corrupt", name, q.Number, q.Start, q.End(), p.Number, p.Start, p.End())
			}
		}
		m.Partitions = append(m.Partitions, p)
	}
	if len(m.Partitions) == 0 {
		return MBR{}, fmt.Errorf("%s: the partition table is empty: not a Raspberry Pi disk image", name)
	}
	return m, nil
}

// writeMBR writes a fresh MBR with the disk identifier and partitions to f
// (the partition table and 55AA; CHS fields are the usual "beyond 1024
// cylinders" values, as Linux tools write for LBA partitions).
func writeMBR(f io.WriterAt, m MBR) error {
	var b [sectorSize]byte
	binary.LittleEndian.PutUint32(b[440:444], m.DiskID)
	for _, p := range m.Partitions {
		if p.Number < 1 || p.Number > 4 || p.Start%sectorSize != 0 || p.Size%sectorSize != 0 {
			return fmt.Errorf("write partition table: partition %d is not sector aligned", p.Number)
		}
		e := b[446+16*(p.Number-1):]
		copy(e[1:4], []byte{0xfe, 0xff, 0xff})
		e[4] = p.Type
		copy(e[5:8], []byte{0xfe, 0xff, 0xff})
		binary.LittleEndian.PutUint32(e[8:12], uint32(p.Start/sectorSize))
		binary.LittleEndian.PutUint32(e[12:16], uint32(p.Size/sectorSize))
	}
	b[510], b[511] = 0x55, 0xaa
	_, err := f.WriteAt(b[:], 0)
	return err
}

// ReadMBR reads the checked partition table of the image file at path.
func ReadMBR(path string) (MBR, error) {
	f, err := os.Open(path)
	if err != nil {
		return MBR{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return MBR{}, err
	}
	return readMBR(f, st.Size(), path)
}
