package nbdroot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// QemuNBDArgs is the qemu-nbd command line that serves e (without the
// program name): persistent (it keeps serving when a client goes), qcow2
// with the golden image as read-only backing file, trim passed down to
// the overlay.
func QemuNBDArgs(e Export, bind string, shared int, pidFile string) []string {
	return []string{
		"--persistent", "--shared=" + strconv.Itoa(shared),
		"--format=qcow2", "--cache=writeback", "--discard=unmap",
		"--bind", bind, "--port", strconv.Itoa(e.Port),
		"--export-name", e.Name,
		"--pid-file", pidFile,
		e.Overlay,
	}
}

// readyTimeout bounds the wait for a new qemu-nbd's pid file (written once
// it has opened the overlay and listens).
const readyTimeout = 2 * time.Minute

// supervise runs e's qemu-nbd until stop is closed or ctx ends, starting
// it again when it dies. The first start's outcome goes to ready.
func (x *Exports) supervise(ctx context.Context, e *export, stop, done chan struct{}, ready chan<- error) {
	defer x.wg.Done()
	defer close(done)
	defer func() {
		x.mu.Lock()
		if e.stop == stop {
			e.stop = nil
		}
		x.mu.Unlock()
	}()
	first := true
	for {
		p, err := x.launch(ctx, e)
		if first {
			first = false
			if err != nil && ctx.Err() != nil {
				x.set(e, Stopped, 0, nil)
				ready <- nil
				return
			}
			if err != nil {
				x.set(e, Failed, 0, err)
				ready <- fmt.Errorf("%s: %w", e.ex.Node, err)
				return
			}
			x.set(e, Serving, p.pid, nil)
			ready <- nil
		} else if err != nil {
			x.set(e, Restarting, 0, err)
		} else {
			x.set(e, Serving, p.pid, nil)
		}
		if p != nil {
			select {
			case <-p.exited:
				x.set(e, Restarting, 0, fmt.Errorf("qemu-nbd for %s exited: %s", e.ex.Node, p.why()))
			case <-stop:
				p.terminate()
				x.set(e, Stopped, 0, nil)
				return
			case <-ctx.Done():
				p.terminate()
				x.set(e, Stopped, 0, nil)
				return
			}
		}
		select {
		case <-time.After(x.cfg.RestartDelay):
		case <-stop:
			x.set(e, Stopped, 0, nil)
			return
		case <-ctx.Done():
			x.set(e, Stopped, 0, nil)
			return
		}
	}
}

// proc is one running qemu-nbd.
type proc struct {
	cmd    *exec.Cmd
	pid    int
	exited chan struct{}
	err    error // Wait's, once exited is closed
	mu     sync.Mutex
	tail   []string // its last lines on stderr
}

func (p *proc) why() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	msg := "exit"
	if p.err != nil {
		msg = p.err.Error()
	}
	if len(p.tail) > 0 {
		msg += ": " + strings.Join(p.tail, "; ")
	}
	return msg
}

// terminate stops the process: SIGTERM (qemu-nbd flushes the overlay and
// exits), SIGKILL after 10 s.
func (p *proc) terminate() {
	syscall.Kill(-p.pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.exited
	}
}

// launch starts e's qemu-nbd and waits until it listens: its pid file
// holds its pid.
func (x *Exports) launch(ctx context.Context, e *export) (*proc, error) {
	pidFile := x.pidPath(e.ex.Node)
	os.Remove(pidFile)
	cmd := exec.Command(x.cfg.QemuNBD, QemuNBDArgs(e.ex, x.cfg.Bind, x.cfg.Shared, pidFile)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", x.cfg.QemuNBD, err)
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		p.collect(stderr, func(line string) {
			x.log.Warn("qemu-nbd: "+line, "node", e.ex.Node, "pid", p.pid)
		})
	}()
	go func() {
		<-logged
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.exited)
	}()
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if readPID(pidFile) == p.pid {
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, errors.New("qemu-nbd " + p.why())
		case <-ctx.Done():
			p.terminate()
			return nil, ctx.Err()
		case <-deadline.C:
			p.terminate()
			return nil, fmt.Errorf("qemu-nbd did not listen on port %d within %s: %s", e.ex.Port, readyTimeout, p.why())
		case <-tick.C:
		}
	}
}

func (p *proc) collect(r io.Reader, log func(string)) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		log(line)
		p.mu.Lock()
		p.tail = append(p.tail, line)
		if len(p.tail) > 5 {
			p.tail = p.tail[1:]
		}
		p.mu.Unlock()
	}
}

// connections counts established TCP connections to local port port
// (/proc/net/tcp and tcp6): how many clients an export has.
func connections(port int) int {
	n := 0
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			// sl local_address rem_address st ...; 01 = ESTABLISHED
			if len(fs) > 3 && strings.HasSuffix(fs[1], want) && fs[3] == "01" {
				n++
			}
		}
	}
	return n
}
