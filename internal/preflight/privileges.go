package preflight

import (
	"fmt"
	"strings"
)

// telmatePrivileges is the Telmate provider's built-in minimum list
// (3.0.2-rc07, PVE 9: VM.Monitor dropped), checked on "/" at configure.
func telmatePrivileges() []string {
	return []string{
		"Datastore.AllocateSpace", "Datastore.Audit", "Pool.Allocate", "Pool.Audit", "Sys.Audit", "Sys.Console", "Sys.Modify",
		"VM.Allocate", "VM.Audit", "VM.Clone", "VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Config.CPU", "VM.Config.Disk",
		"VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options", "VM.Migrate", "VM.PowerMgmt",
	}
}

// extraPrivileges are what provision needs beyond the provider's list:
//   - Datastore.AllocateTemplate: `provision template`'s download-url of a
//     cloud image (with Sys.Audit and Sys.Modify on /) and its import;
//   - VM.GuestAgent.Audit: PVE 9 checks it on the agent calls the provider
//     makes while reading a VM, so apply gets 403 without it although the
//     provider's own configure check passes.
func extraPrivileges() []string {
	return []string{"Datastore.AllocateTemplate", "VM.GuestAgent.Audit"}
}

// RequiredPrivileges is every privilege provision needs on "/".
func RequiredPrivileges() []string {
	return append(telmatePrivileges(), extraPrivileges()...)
}

// RoleName is the role the fix suggests creating.
const RoleName = "Provision"

// privileges checks the token's own privileges on "/" and that the provider's
// configure-time check (GET /access/users?full=1 must list the token's user)
// will pass.
func (r *run) privileges(f *facts) {
	tok := r.c.TokenID()
	user := userOf(tok)
	privsep := true // unknown: assume the stricter case
	userListed := false
	if f.usersErr == nil {
		for _, u := range f.users {
			if u.UserID != user {
				continue
			}
			userListed = true
			for _, t := range u.Tokens {
				if t.TokenID == tokenName(tok) || t.TokenID == tok {
					privsep = t.PrivSep != 0
				}
			}
		}
	}
	all := RequiredPrivileges()
	fix := fmt.Sprintf("pveum role add %s --privs %q   (or: pveum role modify %s --privs ...)\npveum acl modify / --tokens '%s' --roles %s",
		RoleName, strings.Join(all, ","), RoleName, tok, RoleName)
	if privsep {
		fix += fmt.Sprintf("\npveum acl modify / --users '%s' --roles %s   (a privilege-separated token gets at most its user's privileges)", user, RoleName)
	}
	if f.permsErr != nil {
		r.fail(CheckPrivileges, tok, fmt.Sprintf("cannot read the token's permissions: %v", f.permsErr), fix)
		return
	}
	var missing []string
	for _, p := range all {
		if !f.perms.Has("/", p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		r.fail(CheckPrivileges, tok, fmt.Sprintf("missing on /: %s", strings.Join(missing, ", ")), fix)
		return
	}
	if !userListed {
		msg := fmt.Sprintf("the token's user %s is not in GET /access/users?full=1", user)
		if f.usersErr != nil {
			msg = fmt.Sprintf("GET /access/users?full=1 failed: %v", f.usersErr)
		}
		r.fail(CheckPrivileges, tok, msg+": the Telmate provider's permission check stops with \"check privilege separation of api token\"",
			fmt.Sprintf("pveum acl modify /access --tokens '%s' --roles PVEAuditor, or use a token without privilege separation (pveum user token add %s <id> --privsep 0)", tok, user))
		return
	}
	r.pass(CheckPrivileges, tok, "all %d privileges on / (the Telmate provider's minimum and Datastore.AllocateTemplate)", len(all))
}
