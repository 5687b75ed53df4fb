package flash

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	chunkSize = 4 << 20 // bytes per read or write
	workers   = 4       // reads or writes in flight per card
	buffers   = 8       // chunk buffers per card (workers + read-ahead for the consumer)
	holdback  = 1 << 20 // the first MiB (MBR, partition table) is written last
	align     = 4096    // O_DIRECT buffer and length alignment
)

// alignedBuf returns n bytes starting at an address aligned for O_DIRECT.
func alignedBuf(n int) []byte {
	b := make([]byte, n+align)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (align - 1))
	if off != 0 {
		off = align - off
	}
	return b[off : off+n : off+n]
}

// target is an open card or image file.
type target struct {
	f      *os.File
	path   string
	block  bool // a block device (else a regular file)
	direct bool // O_DIRECT is set
}

// openTarget opens a device exclusively with O_DIRECT, or creates an image
// file of size bytes (sparse).
func openTarget(path string, toFile bool, size int64) (*target, error) {
	flags := unix.O_RDWR | unix.O_CLOEXEC
	if toFile {
		flags |= unix.O_CREAT | unix.O_TRUNC
	} else {
		flags |= unix.O_EXCL // a mounted or otherwise claimed disk fails with EBUSY
	}
	fd, err := unix.Open(path, flags|unix.O_DIRECT, 0o644)
	direct := err == nil
	if errors.Is(err, unix.EINVAL) { // a filesystem without O_DIRECT (tmpfs)
		fd, err = unix.Open(path, flags, 0o644)
	}
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("open %s exclusively: %w (mounted or in use)", path, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	t := &target{f: os.NewFile(uintptr(fd), path), path: path, block: !toFile, direct: direct}
	if toFile {
		if err := t.f.Truncate(size); err != nil {
			t.f.Close()
			return nil, fmt.Errorf("size %s: %w", path, err)
		}
	}
	return t, nil
}

// setDirect turns O_DIRECT on or off for the following I/O.
func (t *target) setDirect(on bool) error {
	if t.direct == on {
		return nil
	}
	fl, err := unix.FcntlInt(t.f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		fl |= unix.O_DIRECT
	} else {
		fl &^= unix.O_DIRECT
	}
	if _, err := unix.FcntlInt(t.f.Fd(), unix.F_SETFL, fl); err != nil {
		return err
	}
	t.direct = on
	return nil
}

// writeAt writes b at off. An unaligned length (only the image's last
// bytes) is written with O_DIRECT off.
func (t *target) writeAt(b []byte, off int64) error {
	if len(b)%512 != 0 || off%512 != 0 {
		was := t.direct
		if err := t.setDirect(false); err != nil {
			return err
		}
		defer t.setDirect(was)
	}
	_, err := t.f.WriteAt(b, off)
	return err
}

// readAt fills b from off, reading with O_DIRECT where it is on; bytes past
// the end of a file read as zero... they are never compared.
func (t *target) readAt(b []byte, off int64) error {
	n := len(b)
	if t.direct && n%512 != 0 {
		n += 512 - n%512 // a whole sector; the buffer has room (chunks are aligned)
	}
	got, err := t.f.ReadAt(b[:n], off)
	if got >= len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("read %d bytes at %d: got %d: %w", len(b), off, got, io.ErrUnexpectedEOF)
	}
	return err
}

func (t *target) sync() error { return unix.Fdatasync(int(t.f.Fd())) }

// dropCache makes the next buffered reads come from the device: the block
// device's buffers are flushed (BLKFLSBUF) and the file's pages dropped.
func (t *target) dropCache() error {
	if err := t.sync(); err != nil {
		return err
	}
	if t.block {
		if err := unix.IoctlSetInt(int(t.f.Fd()), unix.BLKFLSBUF, 0); err != nil {
			return fmt.Errorf("BLKFLSBUF %s: %w", t.path, err)
		}
	}
	return unix.Fadvise(int(t.f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// size is the device's (or file's) current size; a pulled card reads 0.
func (t *target) size() (int64, error) {
	if !t.block {
		st, err := t.f.Stat()
		if err != nil {
			return 0, err
		}
		return st.Size(), nil
	}
	var n uint64
	_, _, e := unix.Syscall(unix.SYS_IOCTL, t.f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return 0, e
	}
	return int64(n), nil
}

// clearTable zeroes the first n bytes (MBR, GPT header and entries) and
// checks by reading sector 0 back with the cache dropped that no partition
// table is left.
func (t *target) clearTable(n int64) error {
	zero := alignedBuf(int(n+align-1) / align * align)
	if err := t.writeAt(zero[:n], 0); err != nil {
		return fmt.Errorf("clear partition table of %s: %w", t.path, err)
	}
	if err := t.dropCache(); err != nil {
		return fmt.Errorf("clear partition table of %s: %w", t.path, err)
	}
	if has, err := t.hasTable(); err != nil {
		return fmt.Errorf("clear partition table of %s: read back: %w", t.path, err)
	} else if has {
		return fmt.Errorf("clear partition table of %s: the boot signature is still there after writing zeros", t.path)
	}
	return nil
}

// hasTable reports whether sector 0 carries the MBR boot signature 55 AA.
func (t *target) hasTable() (bool, error) {
	b := alignedBuf(align)
	if err := t.readAt(b[:512], 0); err != nil {
		return false, err
	}
	return b[510] == 0x55 && b[511] == 0xAA, nil
}

// HasPartitionTable reports whether the device or image at path has an MBR
// boot signature in sector 0, read bypassing the page cache.
func HasPartitionTable(path string) (bool, error) {
	t, err := openRead(path)
	if err != nil {
		return false, err
	}
	defer t.f.Close()
	return t.hasTable()
}

// pipe runs produce on up to `workers` jobs at once (several reads or
// writes in flight keep a card's queue full) and consume on each job's
// buffer in job order (hashing needs the bytes in order). The first error
// of either side stops both; jobs not started are never produced.
func pipe[J any](ctx context.Context, jobs []J, produce func(J, []byte) error, consume func(J, []byte) error) error {
	type slot struct {
		buf []byte
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	free := make(chan []byte, buffers)
	for range buffers {
		free <- alignedBuf(chunkSize)
	}
	done := make([]chan slot, len(jobs))
	for i := range done {
		done[i] = make(chan slot, 1)
	}
	type task struct {
		i   int
		buf []byte
	}
	work := make(chan task)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for t := range work {
				if err := ctx.Err(); err != nil {
					done[t.i] <- slot{t.buf, err}
					continue
				}
				done[t.i] <- slot{t.buf, produce(jobs[t.i], t.buf)}
			}
		})
	}
	// Buffers are handed out in job order, so the job the consumer waits
	// for always has one.
	go func() {
		defer close(work)
		for i := range jobs {
			var b []byte
			select {
			case b = <-free:
			case <-ctx.Done():
				return
			}
			select {
			case work <- task{i, b}:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	for i := range jobs {
		var s slot
		select {
		case s = <-done[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		err := s.err
		if err == nil {
			err = ctx.Err()
		}
		if err == nil {
			err = consume(jobs[i], s.buf)
		}
		free <- s.buf
		if err != nil {
			return err
		}
	}
	return nil
}

// openImageFile opens the image for reading.
func openImageFile(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	return f, nil
}

// openRead opens a device or file read-only with O_DIRECT where possible.
func openRead(path string) (*target, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_DIRECT, 0)
	direct := err == nil
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &target{f: os.NewFile(uintptr(fd), path), path: path, direct: direct, block: st.Mode&unix.S_IFMT == unix.S_IFBLK}, nil
}

// rereadPartitions asks the kernel to read the new partition table
// (BLKRRPART); devices that cannot (loop without partscan) are left alone.
func (t *target) rereadPartitions() {
	if t.block {
		_ = unix.IoctlSetInt(int(t.f.Fd()), unix.BLKRRPART, 0)
	}
}
