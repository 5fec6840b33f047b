package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FileName is the config file name searched by Locate.
const FileName = "netops.yaml"

// DefaultEtcDir is the system-wide config directory used by Locate when its
// etcDir argument is empty.
const DefaultEtcDir = "/etc/netops"

// maxFileSize bounds what Load reads; a netops config is a few kilobytes.
const maxFileSize = 8 << 20

// maxNodes bounds how many YAML nodes (after alias expansion) are decoded, so
// that an "alias bomb" cannot exhaust memory.
const maxNodes = 250_000

// Locate returns the config file to use. An explicit path wins and is
// returned even if it does not exist (Load reports that). Otherwise the first
// regular file among cwd/netops.yaml, home/.config/netops/netops.yaml and
// etcDir/netops.yaml (etcDir "" means DefaultEtcDir) is returned, or "" when
// none exists. Empty cwd or home are skipped.
func Locate(explicit, cwd, home, etcDir string) string {
	if explicit != "" {
		return explicit
	}
	if etcDir == "" {
		etcDir = DefaultEtcDir
	}
	var candidates []string
	if cwd != "" {
		candidates = append(candidates, filepath.Join(cwd, FileName))
	}
	if home != "" {
		candidates = append(candidates, filepath.Join(home, ".config", "netops", FileName))
	}
	candidates = append(candidates, filepath.Join(etcDir, FileName))
	for _, p := range candidates {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// Load reads and parses the config file at path. An empty path returns
// Default(). To read standard input, read it yourself and call Parse("-", data).
func Load(path string) (*Config, error) {
	if path == "" {
		return Default(), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, readError(path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, &Error{
			Issues: []Issue{{File: path, Msg: "is a directory, not a config file; pass the path of a YAML file"}},
			Err:    fmt.Errorf("%s: is a directory", path),
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, readError(path, err)
	}
	if len(data) > maxFileSize {
		return nil, &Error{Issues: []Issue{{File: path, Msg: fmt.Sprintf("config file is larger than %d MiB; is this the right file?", maxFileSize>>20)}}}
	}
	return Parse(path, data)
}

func readError(path string, err error) error {
	msg := "cannot read config file: " + errText(err)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		msg = "config file not found; check the path given with --config or create the file"
	case errors.Is(err, fs.ErrPermission):
		msg = "cannot read config file: permission denied; check its owner and mode"
	}
	return &Error{Issues: []Issue{{File: path, Msg: msg}}, Err: err}
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Parse decodes data strictly and validates it. name is the file name used in
// messages; "-" is shown as "<stdin>". An empty or comment-only document is a
// valid, empty config. On failure the error is an *Error listing all issues.
func Parse(name string, data []byte) (*Config, error) {
	if name == "-" {
		name = "<stdin>"
	}
	c := &Config{file: name, pos: map[string]Pos{}}
	d := &decoder{file: name, pos: c.pos, failed: map[string]bool{}}

	root, err := parseYAML(name, data)
	if err != nil {
		return nil, err
	}
	if root != nil {
		d.value(root, reflect.ValueOf(c).Elem(), "")
	}
	issues := d.issues
	issues = append(issues, c.validate(d.failed)...)
	if len(issues) > 0 {
		sortIssues(issues)
		return nil, &Error{Issues: issues}
	}
	return c, nil
}

// parseYAML returns the root node of the single document in data, or nil for
// an empty document.
func parseYAML(name string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, &Error{Issues: []Issue{syntaxIssue(name, data, err)}}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, &Error{Issues: []Issue{syntaxIssue(name, data, err)}}
	default:
		return nil, &Error{Issues: []Issue{{File: name, Line: extra.Line, Msg: "more than one YAML document (---); keep all settings in one document"}}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = root.Content[0]
	}
	if root.Kind == 0 || (root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null") {
		return nil, nil
	}
	return root, nil
}

// splitYAMLError splits "yaml: line 7: msg" into 7 and "msg".
func splitYAMLError(text string) (int, string) {
	text = strings.TrimPrefix(text, "yaml: ")
	rest, ok := strings.CutPrefix(text, "line ")
	if !ok {
		return 0, text
	}
	num, msg, ok := strings.Cut(rest, ": ")
	line, err := strconv.Atoi(num)
	if !ok || err != nil {
		return 0, text
	}
	return line, msg
}

// syntaxIssue turns a YAML parser error into an Issue. yaml.v3 often reports
// the line where the enclosing block starts rather than the faulty line, so
// the line is refined by parsing growing prefixes of the document and
// taking the first one that fails with the same message.
func syntaxIssue(name string, data []byte, err error) Issue {
	line, msg := splitYAMLError(err.Error())
	if l := firstFailingLine(data, msg); l > 0 {
		line = l
	}
	return Issue{File: name, Line: line, Msg: "invalid YAML: " + msg + "; check indentation, quotes and brackets on this line or the one before"}
}

func firstFailingLine(data []byte, msg string) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > 2000 {
		return 0
	}
	end := 0
	for i, l := range lines {
		end += len(l)
		dec := yaml.NewDecoder(bytes.NewReader(data[:end]))
		var n yaml.Node
		var err error
		for err == nil {
			err = dec.Decode(&n)
		}
		if errors.Is(err, io.EOF) {
			continue
		}
		if _, got := splitYAMLError(err.Error()); got == msg {
			return i + 1
		}
	}
	return 0
}

// decoder walks a yaml.Node tree into Go values, like yaml.v3 with
// KnownFields(true), but collecting every problem with its position and key
// path, and recording the position of every key it sees.
type decoder struct {
	file   string
	issues []Issue
	pos    map[string]Pos
	failed map[string]bool // key paths whose value could not be decoded
	nodes  int
	fields map[reflect.Type][]fieldInfo
}

type fieldInfo struct {
	name  string
	index int
}

func (d *decoder) add(n *yaml.Node, path, msg string) {
	is := Issue{File: d.file, Key: path, Msg: msg}
	if n != nil {
		is.Line, is.Column = n.Line, n.Column
	}
	d.issues = append(d.issues, is)
	d.failed[path] = true
}

func (d *decoder) fieldsOf(t reflect.Type) []fieldInfo {
	if d.fields == nil {
		d.fields = map[reflect.Type][]fieldInfo{}
	}
	if fs, ok := d.fields[t]; ok {
		return fs
	}
	var fs []fieldInfo
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fs = append(fs, fieldInfo{name: name, index: i})
	}
	d.fields[t] = fs
	return fs
}

// resolve follows aliases and counts nodes.
func (d *decoder) resolve(n *yaml.Node, path string) *yaml.Node {
	for depth := 0; n != nil && n.Kind == yaml.AliasNode; depth++ {
		if depth > 100 {
			d.add(n, path, "alias chain too deep; simplify the anchors")
			return nil
		}
		n = n.Alias
	}
	d.nodes++
	if d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.add(n, path, "document expands to too many values (aliases?); simplify it")
		}
		return nil
	}
	return n
}

// deref follows aliases (bounded) without counting nodes.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; i < 100 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	n = d.resolve(n, path)
	if n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // empty value: leave the zero value (unset)
	}
	if v.Kind() == reflect.Pointer {
		nv := reflect.New(v.Type().Elem())
		before := len(d.issues)
		d.value(n, nv.Elem(), path)
		if len(d.issues) == before {
			v.Set(nv)
		}
		return
	}
	if reflect.PointerTo(v.Type()).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		u := v.Addr().Interface().(yaml.Unmarshaler)
		if err := u.UnmarshalYAML(n); err != nil {
			d.add(n, path, err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structValue(n, v, path)
	case reflect.Slice:
		d.sliceValue(n, v, path)
	case reflect.Map:
		d.mapValue(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.add(n, path, "expected a string, got "+kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			d.add(n, path, "expected true or false, got "+kindName(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			if _, err := strconv.ParseInt(n.Value, 10, 64); errors.Is(err, strconv.ErrRange) && n.Kind == yaml.ScalarNode {
				d.add(n, path, fmt.Sprintf("integer %s is out of range", n.Value))
				return
			}
			d.add(n, path, "expected an integer, got "+kindName(n))
			return
		}
		if n.Decode(&i) != nil || int64(int(i)) != i {
			d.add(n, path, fmt.Sprintf("integer %s is out of range", n.Value))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || n.Decode(&f) != nil {
			d.add(n, path, "expected a number, got "+kindName(n))
			return
		}
		v.SetFloat(f)
	default:
		d.add(n, path, fmt.Sprintf("internal error: cannot decode into %s", v.Type()))
	}
}

// pairs returns the key/value pairs of a mapping, expanding "<<" merge keys
// (explicit keys win over merged ones) and reporting duplicate keys.
func (d *decoder) pairs(n *yaml.Node, path string) [][2]*yaml.Node {
	var out [][2]*yaml.Node
	seen := map[string]*yaml.Node{}
	var merged [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(val, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.add(k, path, "keys must be plain names, got "+kindName(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.add(k, joinKey(path, k.Value), fmt.Sprintf("duplicate key %q (first at line %d); keep only one", k.Value, first.Line))
			continue
		}
		seen[k.Value] = k
		out = append(out, [2]*yaml.Node{k, val})
	}
	for _, p := range merged {
		if _, ok := seen[p[0].Value]; ok {
			continue
		}
		seen[p[0].Value] = p[0]
		out = append(out, p)
	}
	return out
}

func (d *decoder) mergeSources(val *yaml.Node, path string) [][2]*yaml.Node {
	val = d.resolve(val, path)
	if val == nil {
		return nil
	}
	switch val.Kind {
	case yaml.MappingNode:
		return d.pairs(val, path)
	case yaml.SequenceNode:
		var out [][2]*yaml.Node
		for _, s := range val.Content {
			s = d.resolve(s, path)
			if s == nil {
				continue
			}
			if s.Kind != yaml.MappingNode {
				d.add(s, path, "merge key << needs a mapping or a list of mappings, got "+kindName(s))
				continue
			}
			out = append(out, d.pairs(s, path)...)
		}
		return out
	}
	d.add(val, path, "merge key << needs a mapping or a list of mappings, got "+kindName(val))
	return nil
}

func (d *decoder) structValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		what := "settings"
		if path != "" {
			what = "a mapping of " + path + " settings"
		}
		d.add(n, path, fmt.Sprintf("expected %s (key: value lines), got %s", what, kindName(n)))
		return
	}
	fields := d.fieldsOf(v.Type())
	var typos []string // keys that a misspelled key probably meant
	for _, p := range d.pairs(n, path) {
		k, val := p[0], p[1]
		key := joinKey(path, k.Value)
		var field *fieldInfo
		for i := range fields {
			if fields[i].name == k.Value {
				field = &fields[i]
				break
			}
		}
		if field == nil {
			names := make([]string, len(fields))
			for i, f := range fields {
				names[i] = f.name
			}
			d.add(k, key, unknownKeyMsg(k.Value, names))
			if s := suggest(k.Value, names); s != "" {
				typos = append(typos, joinKey(path, s))
			}
			continue
		}
		d.pos[key] = Pos{k.Line, k.Column}
		d.value(val, v.Field(field.index), key)
	}
	for _, key := range typos {
		if _, present := d.pos[key]; !present {
			// a typo of a required key must not also report it missing
			d.failed[key] = true
		}
	}
}

func unknownKeyMsg(name string, known []string) string {
	if s := suggest(name, known); s != "" {
		return fmt.Sprintf("unknown key %q (did you mean %q?)", name, s)
	}
	return fmt.Sprintf("unknown key %q; remove it or use one of: %s", name, strings.Join(known, ", "))
}

func (d *decoder) sliceValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.add(n, path, "expected a list, got "+kindName(n)+"; write it as [a, b] or as lines starting with \"- \"")
		return
	}
	if len(n.Content) == 0 {
		return // keep nil so that export round-trips
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		key := path + "[" + strconv.Itoa(i) + "]"
		r := deref(item)
		d.pos[key] = Pos{r.Line, r.Column}
		d.value(item, s.Index(i), key)
	}
	v.Set(s)
}

func (d *decoder) mapValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.add(n, path, "expected a mapping (key: value lines), got "+kindName(n))
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		d.add(n, path, fmt.Sprintf("internal error: cannot decode into %s", v.Type()))
		return
	}
	ps := d.pairs(n, path)
	if len(ps) == 0 {
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(ps))
	for _, p := range ps {
		k, val := p[0], p[1]
		key := mapKey(path, k.Value)
		d.pos[key] = Pos{k.Line, k.Column}
		ev := reflect.New(v.Type().Elem()).Elem()
		d.value(val, ev, key)
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), ev)
	}
	v.Set(m)
}

func joinKey(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// mapKey is the key path of a map entry: "rules[0].headers.Accept", or
// `ssh.fingerprints["host:22"]` when the key is not a plain word.
func mapKey(path, k string) string {
	if isWord(k) {
		return joinKey(path, k)
	}
	return path + "[" + strconv.Quote(k) + "]"
}

// isWord reports whether s is non-empty and made of ASCII letters, digits,
// '_' and '-'.
func isWord(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}
