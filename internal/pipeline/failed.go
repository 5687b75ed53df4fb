package pipeline

// NodeError is one node's failure in a stage: what a run's report lists,
// node by node. Its message is the cause's, which names the node already
// ("join pi-r1-07: ...").
type NodeError struct {
	Node string
	Err  error
}

func (e *NodeError) Error() string { return e.Err.Error() }
func (e *NodeError) Unwrap() error { return e.Err }

// NodeErr is err as node's failure, nil when err is nil.
func NodeErr(node string, err error) error {
	if err == nil {
		return nil
	}
	return &NodeError{Node: node, Err: err}
}

// WithNodes is err, carrying the nodes that failed in it for the report
// (err's message unchanged): for a stage whose error is a summary and
// whose per-node causes are kept apart.
func WithNodes(err error, nodes []*NodeError) error {
	if err == nil || len(nodes) == 0 {
		return err
	}
	return &nodesError{err: err, nodes: nodes}
}

type nodesError struct {
	err   error
	nodes []*NodeError
}

func (e *nodesError) Error() string { return e.err.Error() }
func (e *nodesError) Unwrap() []error {
	out := []error{e.err}
	for _, n := range e.nodes {
		out = append(out, n)
	}
	return out
}

// Failed lists the nodes that failed in err, each once with its first
// cause, in the order err holds them.
func Failed(err error) []*NodeError {
	var out []*NodeError
	seen := map[string]bool{}
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *NodeError:
			if !seen[e.Node] {
				seen[e.Node] = true
				out = append(out, e)
			}
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}
