// Command check-client runs the Go flagd provider (go-sdk-contrib) against a flagd-compatible daemon and
// prints one JSON line per check.
//
// Used by daemon/tests/it/clients.rs, which owns the flag file and the expected results; this program only
// evaluates and reports, it asserts nothing itself. The protocol on stdout is the same as
// clients/python/check_client.py: one {"check": ...} line per check, {"event":"ready"}, then (after the
// caller edited the flag file and wrote a line to stdin) {"check":"change-event", ...} and {"event":"done"}.
// On a timeout it prints {"event":"timeout","waiting_for":...} and exits with code 3.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	flagd "github.com/open-feature/go-sdk-contrib/providers/flagd/pkg"
	"github.com/open-feature/go-sdk/openfeature"
)

type check struct {
	name         string
	method       string
	key          string
	fallback     any
	targetingKey string
	attributes   map[string]any
}

var checks = []check{
	{"boolean", "boolean", "bool-flag", false, "", nil},
	{"string", "string", "string-flag", "code-default", "", nil},
	{"integer", "integer", "int-flag", int64(0), "", nil},
	{"float", "float", "float-flag", 0.0, "", nil},
	{"object", "object", "object-flag", map[string]any{}, "", nil},
	{"targeting-match", "string", "targeted-flag", "code-default", "", map[string]any{"email": "admin@example.com"}},
	{"targeting-default", "string", "targeted-flag", "code-default", "", map[string]any{"email": "someone@example.org"}},
	{"fractional-red", "string", "fractional-flag", "code-default", "user-9", nil},
	{"fractional-blue", "string", "fractional-flag", "code-default", "user-2", nil},
	{"disabled", "string", "disabled-flag", "code-default", "", nil},
	{"missing", "boolean", "missing-flag", true, "", nil},
	{"type-mismatch", "boolean", "string-flag", true, "", nil},
	{"static-context", "string", "tier-flag", "code-default", "", nil},
	{"before-change", "string", "change-flag", "code-default", "", nil},
}

var stdout sync.Mutex

func emit(obj map[string]any) {
	stdout.Lock()
	defer stdout.Unlock()
	line, err := json.Marshal(obj) // maps are written with sorted keys
	if err != nil {
		line = []byte(fmt.Sprintf(`{"event":"error","message":%q}`, err.Error()))
	}
	os.Stdout.Write(append(line, '\n'))
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func evaluate(client *openfeature.Client, c check) map[string]any {
	ctx := context.Background()
	evalCtx := openfeature.NewEvaluationContext(c.targetingKey, c.attributes)
	var value any
	var detail openfeature.ResolutionDetail
	switch c.method {
	case "boolean":
		d, _ := client.BooleanValueDetails(ctx, c.key, c.fallback.(bool), evalCtx)
		value, detail = d.Value, d.ResolutionDetail
	case "string":
		d, _ := client.StringValueDetails(ctx, c.key, c.fallback.(string), evalCtx)
		value, detail = d.Value, d.ResolutionDetail
	case "integer":
		d, _ := client.IntValueDetails(ctx, c.key, c.fallback.(int64), evalCtx)
		value, detail = d.Value, d.ResolutionDetail
	case "float":
		d, _ := client.FloatValueDetails(ctx, c.key, c.fallback.(float64), evalCtx)
		value, detail = d.Value, d.ResolutionDetail
	case "object":
		d, _ := client.ObjectValueDetails(ctx, c.key, c.fallback, evalCtx)
		value, detail = d.Value, d.ResolutionDetail
	}
	return map[string]any{
		"value":         value,
		"variant":       nullIfEmpty(detail.Variant),
		"reason":        nullIfEmpty(string(detail.Reason)),
		"error_code":    nullIfEmpty(string(detail.ErrorCode)),
		"error_message": nullIfEmpty(detail.ErrorMessage),
	}
}

func main() {
	host := flag.String("host", "127.0.0.1", "daemon host")
	port := flag.Int("port", 0, "evaluation port (rpc) or sync port (in-process)")
	mode := flag.String("mode", "", "rpc | in-process | file")
	flags := flag.String("flags", "", "path of the flag file (used by --mode file)")
	timeout := flag.Float64("timeout", 30, "seconds before giving up")
	flag.Parse()

	var waitingMu sync.Mutex
	waitingFor := "provider ready"
	setWaiting := func(s string) { waitingMu.Lock(); waitingFor = s; waitingMu.Unlock() }
	time.AfterFunc(time.Duration(*timeout*float64(time.Second)), func() {
		waitingMu.Lock()
		emit(map[string]any{"event": "timeout", "waiting_for": waitingFor})
		os.Exit(3)
	})

	options := []flagd.ProviderOption{flagd.WithHost(*host), flagd.WithPort(uint16(*port))}
	switch *mode {
	case "rpc":
		// The RPC service of this provider version drops configuration-change events when its cache is
		// disabled (handleConfigurationChangeEvent returns before emitting), so RPC mode keeps a cache;
		// only STATIC results are cached and a change event evicts the flags it names.
		options = append(options, flagd.WithRPCResolver(), flagd.WithBasicInMemoryCache())
	case "in-process":
		options = append(options, flagd.WithInProcessResolver(), flagd.WithoutCache())
	case "file":
		options = append(options, flagd.WithFileResolver(), flagd.WithOfflineFilePath(*flags), flagd.WithoutCache())
	default:
		emit(map[string]any{"event": "error", "message": "usage: --port N --mode rpc|in-process|file --flags PATH"})
		os.Exit(2)
	}

	var eventsMu sync.Mutex
	var events [][]string
	onChange := func(details openfeature.EventDetails) {
		eventsMu.Lock()
		events = append(events, append([]string(nil), details.FlagChanges...))
		eventsMu.Unlock()
	}
	openfeature.AddHandler(openfeature.ProviderConfigChange, &onChange)

	provider, err := flagd.NewProvider(options...)
	if err != nil {
		emit(map[string]any{"event": "error", "message": err.Error()})
		os.Exit(2)
	}
	if err := openfeature.SetProviderAndWait(provider); err != nil {
		emit(map[string]any{"event": "error", "message": err.Error()})
		os.Exit(2)
	}
	client := openfeature.NewClient("flagpole-check")

	for _, c := range checks {
		setWaiting("check " + c.name)
		result := evaluate(client, c)
		result["check"] = c.name
		emit(result)
	}

	// Forget the events of the initial load before announcing readiness: the caller edits the file only
	// after "ready", so every event from now on may be the edit's (and it can arrive before the stdin line).
	eventsMu.Lock()
	events = nil
	eventsMu.Unlock()
	emit(map[string]any{"event": "ready"})
	setWaiting("a line on stdin (the caller's signal that the flag file was edited)")
	bufio.NewReader(os.Stdin).ReadString('\n')

	setWaiting("a configuration-change event naming change-flag, then its new value")
	changeCheck := check{"change-event", "string", "change-flag", "code-default", "", nil}
	for {
		eventsMu.Lock()
		seen := map[string]bool{}
		for _, changed := range events {
			for _, key := range changed {
				// The RPC service of this provider version pre-sizes its key list and then appends, so
				// its FlagChanges start with one empty string per flag: not a key the daemon sent.
				if key != "" {
					seen[key] = true
				}
			}
		}
		eventsMu.Unlock()
		if seen["change-flag"] {
			result := evaluate(client, changeCheck)
			if result["value"] != "before" {
				announced := make([]string, 0, len(seen))
				for key := range seen {
					announced = append(announced, key)
				}
				sort.Strings(announced)
				result["check"] = "change-event"
				result["flags_changed"] = announced
				emit(result)
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	emit(map[string]any{"event": "done"})
	os.Exit(0)
}
