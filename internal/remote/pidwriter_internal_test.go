package remote

import "testing"

func TestPIDWriter(t *testing.T) {
	w, err := newPIDWriter()
	if err != nil {
		t.Fatal(err)
	}
	prefix := string(w.prefix)
	// The announcement may arrive in pieces and after other output.
	for _, chunk := range []string{"bashrc noise\n", prefix[:5], prefix[5:] + "42", "17\nreal ", "stderr\n"} {
		w.Write([]byte(chunk))
	}
	if w.pid() != 4217 {
		t.Errorf("pid = %d, want 4217", w.pid())
	}
	if got := string(w.bytes()); got != "bashrc noise\nreal stderr\n" {
		t.Errorf("stderr = %q", got)
	}
	select {
	case <-w.ready:
	default:
		t.Error("ready not closed")
	}
	// A second line like it is the command's own output and stays.
	w.Write([]byte(prefix + "99\n"))
	if w.pid() != 4217 || string(w.bytes()) != "bashrc noise\nreal stderr\n"+prefix+"99\n" {
		t.Errorf("after a second announcement: pid %d, stderr %q", w.pid(), w.bytes())
	}
}
