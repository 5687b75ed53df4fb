package labtest

import (
	"errors"
	"fmt"
	"os"
)

// Outside is a TB for programs outside `go test` (the benchmarks): a
// Fatalf ends the function Run runs, with that error, and Run then runs
// every Cleanup, the last registered first.
type Outside struct {
	cleanups []func()
	err      error   // the Fatalf's
	failed   []error // Fail's
}

// Fail records an error for Run to return, and goes on (for a cleanup).
func (o *Outside) Fail(err error) { o.failed = append(o.failed, err) }

func (o *Outside) Helper() {}
func (o *Outside) Fatalf(format string, args ...any) {
	o.err = fmt.Errorf(format, args...)
	panic(o)
}
func (o *Outside) Skipf(format string, args ...any) { o.Fatalf("cannot run here: "+format, args...) }
func (o *Outside) Cleanup(fn func())                { o.cleanups = append(o.cleanups, fn) }
func (o *Outside) Logf(format string, args ...any)  { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// Run runs fn, then every cleanup; a Fatalf inside fn becomes its error.
func (o *Outside) Run(fn func() error) error {
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r != o {
					panic(r)
				}
				err = o.err
			}
		}()
		return fn()
	}()
	for i := len(o.cleanups) - 1; i >= 0; i-- {
		o.cleanups[i]()
	}
	o.cleanups = nil
	if err == nil {
		err = o.err
	}
	return errors.Join(append([]error{err}, o.failed...)...)
}
