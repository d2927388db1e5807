// Command k8s-proto writes the protobuf descriptors of the Kubernetes API
// types that the embedded API server decodes (kubectl sends built-in kinds as
// protobuf), plus the Go JSON presence facts the descriptors cannot carry.
//
// Run from this directory: `go run .` (uses the Go module proxy once).
// Outputs (committed): ../../src/cluster/apiserver/proto/k8s.binpb and
// ../../src/cluster/apiserver/proto/fields.txt.
package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"

	gogo "github.com/gogo/protobuf/proto"
	descpb "github.com/gogo/protobuf/protoc-gen-gogo/descriptor"

	// The groups whose types are registered with gogo on import.
	_ "k8s.io/api/apps/v1"
	_ "k8s.io/api/authorization/v1"
	_ "k8s.io/api/autoscaling/v1"
	_ "k8s.io/api/autoscaling/v2"
	_ "k8s.io/api/batch/v1"
	_ "k8s.io/api/coordination/v1"
	_ "k8s.io/api/core/v1"
	_ "k8s.io/api/discovery/v1"
	_ "k8s.io/api/events/v1"
	_ "k8s.io/api/networking/v1"
	_ "k8s.io/api/policy/v1"
	_ "k8s.io/api/rbac/v1"
	_ "k8s.io/api/scheduling/v1"
	_ "k8s.io/api/storage/v1"
	_ "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// The files to start from; their imports are followed.
var roots = []string{
	"k8s.io/api/apps/v1/generated.proto",
	"k8s.io/api/authorization/v1/generated.proto",
	"k8s.io/api/autoscaling/v1/generated.proto",
	"k8s.io/api/autoscaling/v2/generated.proto",
	"k8s.io/api/batch/v1/generated.proto",
	"k8s.io/api/coordination/v1/generated.proto",
	"k8s.io/api/core/v1/generated.proto",
	"k8s.io/api/discovery/v1/generated.proto",
	"k8s.io/api/events/v1/generated.proto",
	"k8s.io/api/networking/v1/generated.proto",
	"k8s.io/api/policy/v1/generated.proto",
	"k8s.io/api/rbac/v1/generated.proto",
	"k8s.io/api/scheduling/v1/generated.proto",
	"k8s.io/api/storage/v1/generated.proto",
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1/generated.proto",
}

func fileDescriptor(name string) (*descpb.FileDescriptorProto, []byte) {
	gz := gogo.FileDescriptor(name)
	if gz == nil {
		panic("no descriptor registered for " + name)
	}
	r, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		panic(err)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		panic(err)
	}
	fd := &descpb.FileDescriptorProto{}
	if err := gogo.Unmarshal(raw, fd); err != nil {
		panic(err)
	}
	// Comments are not needed to decode; keep the committed file small.
	fd.SourceCodeInfo = nil
	// gogo's code-generation options mean nothing to a decoder; dropping them
	// also drops the import of gogo.proto and descriptor.proto.
	fd.Options = nil
	deps := fd.Dependency[:0]
	for _, d := range fd.Dependency {
		if !strings.HasPrefix(d, "github.com/gogo/") {
			deps = append(deps, d)
		}
	}
	fd.Dependency = deps
	stripOptions(fd.MessageType)
	raw, err = gogo.Marshal(fd)
	if err != nil {
		panic(err)
	}
	return fd, raw
}

// stripOptions drops gogo's options but keeps the two that change decoding:
// map_entry (a map, not a list of entries) and packed.
func stripOptions(msgs []*descpb.DescriptorProto) {
	for _, m := range msgs {
		if m.GetOptions().GetMapEntry() {
			m.Options = &descpb.MessageOptions{MapEntry: gogo.Bool(true)}
		} else {
			m.Options = nil
		}
		for _, f := range m.Field {
			if f.GetOptions().GetPacked() {
				f.Options = &descpb.FieldOptions{Packed: gogo.Bool(true)}
			} else {
				f.Options = nil
			}
		}
		stripOptions(m.NestedType)
	}
}

func varint(buf *bytes.Buffer, v uint64) {
	for v >= 0x80 {
		buf.WriteByte(byte(v) | 0x80)
		v >>= 7
	}
	buf.WriteByte(byte(v))
}

// fieldFacts lists what Go's encoding/json does that the descriptors cannot
// say, one field a line: `zero` where a zero value is still written (pointers
// and fields without omitempty) and `json=NAME` where the JSON name differs
// from the proto name (JSONSchemaProps' `$ref`, `x-kubernetes-*`), `inline`
// where an embedded struct's fields sit in the parent's JSON object.
func fieldFacts(pkg string, msgs []*descpb.DescriptorProto, prefix string, out *[]string) {
	for _, m := range msgs {
		full := prefix + m.GetName()
		fieldFacts(pkg, m.NestedType, full+".", out)
		t := gogo.MessageType(pkg + "." + full)
		if t == nil || t.Kind() != reflect.Ptr {
			continue // map entries are registered as Go map types, not structs
		}
		st := t.Elem()
		if st.Kind() != reflect.Struct {
			continue // named lists such as ExtraValue have no fields of their own
		}
		for i := 0; i < st.NumField(); i++ {
			f := st.Field(i)
			name := ""
			for _, part := range strings.Split(f.Tag.Get("protobuf"), ",") {
				if strings.HasPrefix(part, "name=") {
					name = strings.TrimPrefix(part, "name=")
				}
			}
			if name == "" {
				continue
			}
			jsonTag := f.Tag.Get("json")
			jsonName := strings.Split(jsonTag, ",")[0]
			var facts []string
			k := f.Type.Kind()
			scalar := k != reflect.Slice && k != reflect.Map && k != reflect.Struct &&
				!(k == reflect.Ptr && f.Type.Elem().Kind() == reflect.Struct)
			if scalar && (k == reflect.Ptr || !strings.Contains(jsonTag, ",omitempty")) {
				facts = append(facts, "zero")
			}
			if jsonName == "" && strings.Contains(jsonTag, ",inline") {
				// An embedded struct (Probe's ProbeHandler, Volume's VolumeSource):
				// its fields sit in the parent's JSON object.
				facts = append(facts, "inline")
			}
			if jsonName != "" && jsonName != "-" && jsonName != name {
				facts = append(facts, "json="+jsonName)
			}
			if len(facts) > 0 {
				*out = append(*out, pkg+"."+full+"."+name+" "+strings.Join(facts, " "))
			}
		}
	}
}

func main() {
	var order []string
	seen := map[string]bool{}
	files := map[string][]byte{}
	var fds []*descpb.FileDescriptorProto
	var visit func(string)
	visit = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		fd, raw := fileDescriptor(name)
		for _, dep := range fd.Dependency {
			visit(dep)
		}
		order = append(order, name)
		files[name] = raw
		fds = append(fds, fd)
	}
	for _, r := range roots {
		visit(r)
	}
	var set bytes.Buffer
	for _, name := range order {
		// FileDescriptorSet.file is field 1, length-delimited.
		set.WriteByte(0x0a)
		varint(&set, uint64(len(files[name])))
		set.Write(files[name])
	}
	var fields []string
	for _, fd := range fds {
		fieldFacts(fd.GetPackage(), fd.MessageType, "", &fields)
	}
	sort.Strings(fields)
	dir := "../../src/cluster/apiserver/proto/"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		panic(err)
	}
	if err := os.WriteFile(dir+"k8s.binpb", set.Bytes(), 0o644); err != nil {
		panic(err)
	}
	header := "# Generated by tools/k8s-proto. Per proto field, what Go's encoding/json does:\n# `zero`: a zero value is still written (pointer or no omitempty); `json=NAME`: the JSON name; `inline`: fields go in the parent object.\n"
	if err := os.WriteFile(dir+"fields.txt", []byte(header+strings.Join(fields, "\n")+"\n"), 0o644); err != nil {
		panic(err)
	}
	fmt.Printf("%d files, %d bytes, %d field facts\n", len(order), set.Len(), len(fields))
}
