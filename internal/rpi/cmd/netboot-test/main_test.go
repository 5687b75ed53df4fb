package main

import (
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/rpi/smoke"
)

func TestAddProofRunsBeforeTheSmokeCheck(t *testing.T) {
	ud := []byte("#cloud-config\nhostname: pi-r1-01\nruncmd:\n  - [systemctl, enable, --now, ssh]\n")
	got, err := addProof(ud, "pi-r1-01 0123abcd")
	if err != nil {
		t.Fatal(err)
	}
	withSmoke, err := smoke.SmokeUserData(got, "#!/bin/sh\n")
	if err != nil {
		t.Fatal(err)
	}
	s := string(withSmoke)
	ssh, proof, check := strings.Index(s, "enable, --now, ssh"), strings.Index(s, "echo 'pi-r1-01 0123abcd' > "+proofPath), strings.Index(s, "start, --no-block, "+smoke.UnitName)
	if ssh < 0 || proof < 0 || check < 0 || !(ssh < proof && proof < check) {
		t.Errorf("runcmd order wrong (ssh %d, proof %d, check %d):\n%s", ssh, proof, check, s)
	}
	if !strings.Contains(s, "hostname: pi-r1-01") || !strings.Contains(s, "SMOKE netboot_proof=") {
		t.Errorf("user-data:\n%s", s)
	}
	if _, err := addProof([]byte("- not a mapping\n"), "x"); err == nil {
		t.Error("a list as user-data is accepted")
	}
}
