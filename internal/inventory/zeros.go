package inventory

import (
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// An explicit 0 is never quietly replaced by a default. A count of 0 is
// allowed and means no nodes (a group or rack emptied for a while); any
// other 0 that a default would replace is a problem, as is 0 in the fields
// where "absent" means "work it out" (swarm.managers, a group's vmidStart).
var (
	zeroMeansNone    = regexp.MustCompile(`^(proxmox\.vms|pis\.racks)\[\d+\]\.count$`)
	zeroMeansDefault = regexp.MustCompile(`^(swarm\.managers|proxmox\.vms\[\d+\]\.vmidStart)$`)
)

// explicitZeros checks the fields written as 0 (paths) after SetDefaults:
// counts go back to 0, other defaulted zeros are problems.
func (inv *Inventory) explicitZeros(paths []string) Problems {
	var probs Problems
	for _, path := range paths {
		v, ok := fieldByPath(reflect.ValueOf(&inv.Lab).Elem(), path)
		if !ok || v.Kind() != reflect.Int {
			continue
		}
		switch {
		case zeroMeansNone.MatchString(path):
			v.SetInt(0)
		case zeroMeansDefault.MatchString(path):
			probs = append(probs, inv.problem(path, "0 is not a usable value: leave the field out to have provision work it out"))
		case v.Int() != 0:
			probs = append(probs, inv.problem(path, "0 is not a usable value: leave the field out for the default (%d), or give the value you mean", v.Int()))
		}
	}
	return probs
}

// fieldByPath finds the value at a decoder field path such as
// proxmox.vms[2].count, following the yaml tags.
func fieldByPath(v reflect.Value, path string) (reflect.Value, bool) {
	for _, part := range strings.Split(path, ".") {
		name, rest, _ := strings.Cut(part, "[")
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return v, false
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return v, false
		}
		found := false
		for i := 0; i < v.NumField(); i++ {
			if strings.Split(v.Type().Field(i).Tag.Get("yaml"), ",")[0] == name {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return v, false
		}
		for rest != "" {
			num, after, ok := strings.Cut(rest, "]")
			i, err := strconv.Atoi(num)
			if !ok || err != nil || v.Kind() != reflect.Slice || i < 0 || i >= v.Len() {
				return v, false
			}
			v = v.Index(i)
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return v, true
}
