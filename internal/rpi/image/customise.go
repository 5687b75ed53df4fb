package image

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/fhlab/provision/internal/rpi/fatfs"
)

// bakeOptions is what goes into every image of a definition.
type bakeOptions struct {
	Def  *Definition
	Lab  Overlay  // labOverlay
	User string   // ssh.user
	Keys []string // ssh.authorizedKeys
	// Epoch stamps what provision writes (ext4 inode times, FAT entries).
	Epoch int64
	Tmp   string // scratch directory
}

// customise bakes the lab into a base image file in place: the root file
// system through debugfs, the boot partition through go-diskfs. The caller
// works on a copy: on error the file is half-changed and must be dropped.
func customise(ctx context.Context, work string, o bakeOptions) (Layout, error) {
	img, err := os.OpenFile(work, os.O_RDWR, 0)
	if err != nil {
		return Layout{}, err
	}
	defer img.Close()
	l, err := detect(ctx, img, work)
	if err != nil {
		return Layout{}, err
	}
	root := ext4{Image: work, Offset: l.Root.Start, Epoch: o.Epoch}
	ov := append(Overlay{}, o.Lab...)
	users, err := userOverlay(ctx, root, o.User, o.Keys)
	if err != nil {
		return Layout{}, fmt.Errorf("%s: ssh.user %s: %w", work, o.User, err)
	}
	ov = append(ov, users...)
	ov = append(ov, sshEnable(ctx, root)...)
	if err := applyOverlay(ctx, root, ov, o.Tmp); err != nil {
		return Layout{}, fmt.Errorf("%s: partition %d (%s): %w", work, l.Root.Number, l.Root.Label, err)
	}

	fat, err := openFAT(img, l.Boot)
	if err != nil {
		return Layout{}, err
	}
	cfg, err := fat.readFile("config.txt")
	if err != nil {
		return Layout{}, err
	}
	if cfg, err = baseConfig(o.Def, cfg); err != nil {
		return Layout{}, err
	}
	if err := fat.writeFile("config.txt", cfg); err != nil {
		return Layout{}, err
	}
	l.Cmdline = withTokens(l.Cmdline, cgroupTokens...)
	if err := fat.writeFile("cmdline.txt", []byte(l.Cmdline+"\n")); err != nil {
		return Layout{}, err
	}
	if fatfs.IsFAT32(img, l.Boot.Start) {
		if err := fixFATTimes(img, l.Boot, time.Unix(o.Epoch, 0)); err != nil {
			return Layout{}, err
		}
	}
	return l, img.Sync()
}

// sshEnable links ssh.service into multi-user.target.wants when the image
// has the unit (Raspberry Pi OS ships sshd disabled).
func sshEnable(ctx context.Context, root ext4) Overlay {
	units := []string{"/lib/systemd/system/ssh.service", "/usr/lib/systemd/system/ssh.service"}
	st, err := root.stat(ctx, units...)
	if err != nil {
		return nil
	}
	for _, u := range units {
		if st[u].Type == "regular" {
			return Overlay{{Path: "/etc/systemd/system/multi-user.target.wants/ssh.service", Kind: KindSymlink, Target: u}}
		}
	}
	return nil
}
