package terraform

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
)

// Output returns the root module's outputs flattened into dotted keys:
// an output vms = {mgr-1 = {ip = "..."}} gives "vms.mgr-1.ip". Sensitive
// outputs are left out.
func (r *Runner) Output(ctx context.Context) (map[string]string, error) {
	r.tf.SetStdout(io.Discard) // values are data, not log
	outs, err := r.tf.Output(ctx)
	r.tf.SetStdout(r.stdout)
	r.flush()
	if err != nil {
		return nil, r.fail("output", err)
	}
	flat := map[string]string{}
	for name, o := range outs {
		if o.Sensitive {
			continue
		}
		var v any
		if err := json.Unmarshal(o.Value, &v); err != nil {
			return nil, fmt.Errorf("terraform output %s: %w", name, err)
		}
		flatten(flat, name, v)
	}
	return flat, nil
}

// flatten writes v under prefix: objects by key, lists by index, scalars
// as text (null as "").
func flatten(dst map[string]string, prefix string, v any) {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			flatten(dst, prefix+"."+k, t[k])
		}
	case []any:
		for i, e := range t {
			flatten(dst, prefix+"."+strconv.Itoa(i), e)
		}
	case nil:
		dst[prefix] = ""
	case string:
		dst[prefix] = t
	case float64:
		dst[prefix] = strconv.FormatFloat(t, 'f', -1, 64)
	case bool:
		dst[prefix] = strconv.FormatBool(t)
	default:
		dst[prefix] = fmt.Sprint(t)
	}
}
