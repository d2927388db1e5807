// Command health computes, for each Model object on stdin (a JSON array),
// the health Argo CD shows with driftline's health check
// (charts/driftline/health/model.lua run in gopher-lua, the Lua
// interpreter Argo CD itself embeds) and the status kstatus computes
// (sigs.k8s.io/cli-utils, what Flux, kpt and `kubectl wait`-style tools
// read). It prints one JSON line per object.
//
//	go run . LUA_FILE < models.json
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Health        string `json:"health"`
	HealthMessage string `json:"healthMessage"`
	Kstatus       string `json:"kstatus"`
	KstatusReason string `json:"kstatusMessage"`
}

// toLua converts decoded JSON into Lua values as Argo CD does: objects and
// arrays become tables (arrays 1-based), numbers, strings and booleans stay.
func toLua(L *lua.LState, v interface{}) lua.LValue {
	switch x := v.(type) {
	case map[string]interface{}:
		t := L.NewTable()
		for k, e := range x {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []interface{}:
		t := L.NewTable()
		for _, e := range x {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(x)
	case float64:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case bool:
		return lua.LBool(x)
	default:
		return lua.LNil
	}
}

func health(script string, obj map[string]interface{}) (string, string, error) {
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return "", "", err
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the health script returned no table")
	}
	return ret.RawGetString("status").String(), ret.RawGetString("message").String(), nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: health LUA_FILE < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// apimachinery's decoder keeps whole numbers int64, as the API server
	// hands them to kstatus (encoding/json would make them float64).
	var objects []map[string]interface{}
	if err := kjson.Unmarshal(input, &objects); err != nil {
		fmt.Fprintln(os.Stderr, "stdin is not a JSON array of objects:", err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	for i, obj := range objects {
		h, msg, err := health(string(script), obj)
		if err != nil {
			fmt.Fprintf(os.Stderr, "object %d: %v\n", i, err)
			os.Exit(1)
		}
		res, err := status.Compute(&unstructured.Unstructured{Object: obj})
		if err != nil {
			fmt.Fprintf(os.Stderr, "object %d: kstatus: %v\n", i, err)
			os.Exit(1)
		}
		_ = out.Encode(verdict{Health: h, HealthMessage: msg, Kstatus: res.Status.String(), KstatusReason: res.Message})
	}
}
