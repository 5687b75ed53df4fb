package pvesim

import (
	"net/http"
	"slices"
	"strings"
)

// allPrivileges are PVE 9's privileges (what root@pam has everywhere).
var allPrivileges = []string{
	"Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
	"Group.Allocate", "Mapping.Audit", "Mapping.Modify", "Mapping.Use", "Permissions.Modify",
	"Pool.Allocate", "Pool.Audit", "Realm.Allocate", "Realm.AllocateUser", "SDN.Allocate", "SDN.Audit",
	"SDN.Use", "Sys.AccessNetwork", "Sys.Audit", "Sys.Console", "Sys.Incoming", "Sys.Modify",
	"Sys.PowerMgmt", "Sys.Syslog", "User.Modify", "VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone",
	"VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit", "VM.Config.Disk", "VM.Config.HWType",
	"VM.Config.Memory", "VM.Config.Network", "VM.Config.Options", "VM.Console", "VM.GuestAgent.Audit",
	"VM.GuestAgent.FileRead", "VM.GuestAgent.FileSystemMgmt", "VM.GuestAgent.FileWrite",
	"VM.GuestAgent.Unrestricted", "VM.Migrate", "VM.PowerMgmt", "VM.Replicate", "VM.Snapshot",
	"VM.Snapshot.Rollback",
}

// aclPrivs returns the privileges an ACL grants on path: those of the
// deepest ACL path that is path or one of its parents (ACLs propagate).
func aclPrivs(acl map[string][]string, path string) map[string]bool {
	best, bestLen := "", -1
	for p := range acl {
		if isParentPath(p, path) && len(p) > bestLen {
			best, bestLen = p, len(p)
		}
	}
	out := map[string]bool{}
	if bestLen < 0 {
		return out
	}
	for _, priv := range acl[best] {
		out[priv] = true
	}
	return out
}

func isParentPath(parent, path string) bool {
	parent = "/" + strings.Trim(parent, "/")
	path = "/" + strings.Trim(path, "/")
	return parent == "/" || parent == path || strings.HasPrefix(path, parent+"/")
}

// privsLocked returns authID's privileges on path: root@pam has all; a
// privilege-separated token has the intersection of its user's and its
// own. Callers hold s.mu.
func (s *Sim) privsLocked(authID, path string) map[string]bool {
	userid, tokenName, isToken := strings.Cut(authID, "!")
	if userid == "root@pam" && !isToken {
		out := map[string]bool{}
		for _, p := range allPrivileges {
			out[p] = true
		}
		return out
	}
	var userPrivs map[string]bool
	if userid == "root@pam" {
		userPrivs = map[string]bool{}
		for _, p := range allPrivileges {
			userPrivs[p] = true
		}
	} else if u := s.users[userid]; u != nil {
		userPrivs = aclPrivs(u.acl, path)
	} else {
		return map[string]bool{}
	}
	if !isToken {
		return userPrivs
	}
	tok := s.tokens[userid+"!"+tokenName]
	if tok == nil {
		return map[string]bool{}
	}
	if !tok.privsep {
		return userPrivs
	}
	tokPrivs := aclPrivs(tok.acl, path)
	out := map[string]bool{}
	for p := range userPrivs {
		if tokPrivs[p] {
			out[p] = true
		}
	}
	return out
}

// checkPermissions evaluates a method's permissions.check like PVE's
// check_api2_permissions; {"user":"all"} and description-only entries pass
// (their handlers check what PVE checks in code).
func (s *Sim) checkPermissions(r *request, perms map[string]any) error {
	check, ok := perms["check"].([]any)
	if !ok || r.authID == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok, detail := s.evalCheck(r, check); !ok {
		if detail == "" {
			return errf(http.StatusForbidden, "Permission check failed")
		}
		return errf(http.StatusForbidden, "Permission check failed (%s)", detail)
	}
	return nil
}

func (s *Sim) evalCheck(r *request, check []any) (bool, string) {
	if len(check) == 0 {
		return true, ""
	}
	op, _ := check[0].(string)
	switch op {
	case "and":
		for _, c := range check[1:] {
			sub, _ := c.([]any)
			if ok, detail := s.evalCheck(r, sub); !ok {
				return false, detail
			}
		}
		return true, ""
	case "or":
		for _, c := range check[1:] {
			sub, _ := c.([]any)
			if ok, _ := s.evalCheck(r, sub); ok {
				return true, ""
			}
		}
		return false, ""
	case "perm":
		if len(check) < 3 {
			return true, ""
		}
		tmpl, _ := check[1].(string)
		var privs []string
		if l, ok := check[2].([]any); ok {
			for _, p := range l {
				if ps, ok := p.(string); ok {
					privs = append(privs, ps)
				}
			}
		}
		anyOf := false
		for i := 3; i+1 < len(check); i += 2 {
			key, _ := check[i].(string)
			switch key {
			case "any":
				anyOf = check[i+1] != nil && check[i+1] != float64(0)
			case "require_param":
				name, _ := check[i+1].(string)
				if !r.has(name) {
					return false, ""
				}
			}
		}
		path := expandPermPath(tmpl, r)
		have := s.privsLocked(r.authID, path)
		if anyOf {
			if slices.ContainsFunc(privs, func(p string) bool { return have[p] }) {
				return true, ""
			}
			return false, path + ", " + strings.Join(privs, "|")
		}
		for _, p := range privs {
			if !have[p] {
				return false, path + ", " + p
			}
		}
		return true, ""
	}
	return true, "" // userid-param, userid-group, ...: checked by handlers where it matters
}

func expandPermPath(tmpl string, r *request) string {
	var b strings.Builder
	for {
		i := strings.Index(tmpl, "{")
		if i < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		j := strings.Index(tmpl[i:], "}")
		if j < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		b.WriteString(tmpl[:i])
		b.WriteString(r.str(tmpl[i+1 : i+j]))
		tmpl = tmpl[i+j+1:]
	}
}

// requirePriv fails like PVE's check() when authID lacks priv on path.
func (s *Sim) requirePriv(r *request, path string, privs ...string) error {
	if r.authID == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	have := s.privsLocked(r.authID, path)
	for _, p := range privs {
		if !have[p] {
			return errf(http.StatusForbidden, "Permission check failed (%s, %s)", path, p)
		}
	}
	return nil
}

// requirePrivUnlocked is requirePriv for callers already holding s.mu.
func (s *Sim) requirePrivUnlocked(r *request, path string, privs ...string) error {
	if r.authID == "" {
		return nil
	}
	have := s.privsLocked(r.authID, path)
	for _, p := range privs {
		if !have[p] {
			return errf(http.StatusForbidden, "Permission check failed (%s, %s)", path, p)
		}
	}
	return nil
}
