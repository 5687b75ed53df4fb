package lab

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// userComment marks users the lab created (the GECOS field), so a Down
// after a crash, or the last of several labs sharing the user, can tell
// them from the machine's own users.
const userComment = "provision lab"

// ensureGroup creates the lab's group, which owns every node's socket.
func (l *Lab) ensureGroup(ctx context.Context) error {
	if _, err := user.LookupGroup(l.group); err == nil {
		return nil
	}
	if _, err := run(ctx, l.tools.groupadd, "--system", l.group); err != nil {
		if _, lerr := user.LookupGroup(l.group); lerr == nil {
			return nil // made meanwhile
		}
		return fmt.Errorf("create group %s: %w", l.group, err)
	}
	return nil
}

// ensureUser makes sure the inventory's SSH user exists (sshd only
// accepts users of this machine) and is in the lab group. A missing user
// is created as a system user with shell /bin/sh, home in the labs' base
// directory (<base>/home/<user>: it outlives this lab when another lab
// still uses the user, and an SSH session never starts in a missing home)
// and the password field "*" (sshd without PAM refuses the
// locked "!" that useradd puts there by default); m records it so Down
// removes it.
func (l *Lab) ensureUser(ctx context.Context, m *Manifest) error {
	name := l.cfg.SSHUser
	u, err := user.Lookup(name)
	if err != nil {
		home := filepath.Join(filepath.Dir(l.cfg.StateDir), "home", name)
		if err := os.MkdirAll(filepath.Dir(home), 0o755); err != nil {
			return fmt.Errorf("create user %s: %w", name, err)
		}
		m.CreatedUser = true // before creating: a crash in between leaves a marked user Down can find
		if err := m.save(l.manifestPath()); err != nil {
			return err
		}
		_, err := run(ctx, l.tools.useradd, "--system", "--user-group", "--create-home",
			"--home-dir", home, "--shell", "/bin/sh", "--password", "*",
			"--comment", userComment+" "+l.cfg.Prefix, "--groups", l.group, name)
		if err != nil {
			if _, lerr := user.Lookup(name); lerr != nil {
				return fmt.Errorf("create user %s: %w", name, err)
			}
			// Another lab made it meanwhile: it is that lab's.
			m.CreatedUser = false
			if err := m.save(l.manifestPath()); err != nil {
				return err
			}
		} else {
			l.log.Debug("created user for SSH logins", "user", name, "home", home)
			return nil
		}
		u, _ = user.Lookup(name)
	}
	if u != nil && strings.HasPrefix(u.Name, userComment+" ") && !exists(u.HomeDir) {
		// A lab's user whose home went with an older lab: give it the
		// shared one, or every session starts with a chdir complaint.
		if err := l.moveHome(ctx, u); err != nil {
			return err
		}
	}
	if u != nil && lockedPassword(name) {
		l.log.Warn("the SSH user's password field is locked (!); sshd without PAM refuses key logins for it: run usermod -p '*' "+name, "user", name)
	}
	if _, err := run(ctx, l.tools.usermod, "--append", "--groups", l.group, name); err != nil {
		return fmt.Errorf("add user %s to group %s: %w", name, l.group, err)
	}
	return nil
}

// moveHome gives a lab-made user the shared home <base>/home/<user>.
func (l *Lab) moveHome(ctx context.Context, u *user.User) error {
	home := filepath.Join(filepath.Dir(l.cfg.StateDir), "home", u.Username)
	if err := os.MkdirAll(home, 0o755); err != nil {
		return fmt.Errorf("make home of user %s: %w", u.Username, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(home, uid, gid); err != nil {
		return fmt.Errorf("make home of user %s: %w", u.Username, err)
	}
	if _, err := run(ctx, l.tools.usermod, "--home", home, u.Username); err != nil {
		return fmt.Errorf("make home of user %s: %w", u.Username, err)
	}
	l.log.Debug("gave the SSH user a new home (its old one is gone)", "user", u.Username, "home", home)
	return nil
}

// lockedPassword reports whether /etc/shadow marks the user's password
// locked ("!..."), which sshd with UsePAM no treats as a locked account.
func lockedPassword(name string) bool {
	data, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) >= 2 && f[0] == name {
			return strings.HasPrefix(f[1], "!")
		}
	}
	return false
}

// removeUser deletes the SSH user when a lab made it (this one, or one
// that crashed: the comment tells) and no other live lab still uses it.
func (l *Lab) removeUser(ctx context.Context, name string, createdHere bool, others []*Manifest) error {
	u, err := user.Lookup(name)
	if err != nil {
		return nil // gone already
	}
	if !createdHere && !strings.HasPrefix(u.Name, userComment+" ") {
		return nil // the machine's own user
	}
	for _, o := range others {
		if o.SSHUser == name {
			l.log.Debug("keeping user: another lab uses it", "user", name, "lab", o.Prefix)
			return nil
		}
	}
	if _, err := run(ctx, l.tools.userdel, name); err != nil {
		return fmt.Errorf("remove user %s: %w", name, err)
	}
	// userdel leaves the home; the labs' one goes with the user.
	base := filepath.Dir(l.cfg.StateDir)
	if strings.HasPrefix(u.HomeDir, base+"/home/") {
		_ = os.RemoveAll(u.HomeDir)
		_ = os.Remove(filepath.Join(base, "home"))
	}
	return nil
}

// removeGroup deletes the lab's group (and with it every membership).
func (l *Lab) removeGroup(ctx context.Context) error {
	if _, err := user.LookupGroup(l.group); err != nil {
		return nil
	}
	if _, err := run(ctx, l.tools.groupdel, l.group); err != nil {
		if _, lerr := user.LookupGroup(l.group); lerr != nil {
			return nil
		}
		return fmt.Errorf("remove group %s: %w", l.group, err)
	}
	return nil
}
