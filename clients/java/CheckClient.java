// Runs the Java flagd provider (java-sdk-contrib) against a flagd-compatible daemon and prints one JSON line
// per check.
//
// Used by daemon/tests/it/clients.rs, which owns the flag file and the expected results; this program only
// evaluates and reports, it asserts nothing itself. The protocol on stdout is the same as
// clients/python/check_client.py: one {"check": ...} line per check, {"event":"ready"}, then (after the caller
// edited the flag file and wrote a line to stdin) {"check":"change-event", ...} and {"event":"done"}.
// On a timeout it prints {"event":"timeout","waiting_for":...} and exits with code 3.
//
// Run as a single source file: java -cp "$(cat <class path file>)" CheckClient.java --port N --mode rpc ...

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.openfeature.contrib.providers.flagd.Config;
import dev.openfeature.contrib.providers.flagd.FlagdOptions;
import dev.openfeature.contrib.providers.flagd.FlagdProvider;
import dev.openfeature.sdk.Client;
import dev.openfeature.sdk.FlagEvaluationDetails;
import dev.openfeature.sdk.ImmutableContext;
import dev.openfeature.sdk.MutableStructure;
import dev.openfeature.sdk.OpenFeatureAPI;
import dev.openfeature.sdk.Value;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

public class CheckClient {
    private static final ObjectMapper JSON =
            new ObjectMapper().configure(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS, true);
    private static volatile String waitingFor = "provider ready";

    // check name, evaluation method, flag key, code default, targeting key, one context attribute (key, value)
    private record Check(String name, String method, String key, Object fallback, String targetingKey,
                         String attrKey, String attrValue) {}

    private static final List<Check> CHECKS = List.of(
            new Check("boolean", "boolean", "bool-flag", false, null, null, null),
            new Check("string", "string", "string-flag", "code-default", null, null, null),
            new Check("integer", "integer", "int-flag", 0, null, null, null),
            new Check("float", "float", "float-flag", 0.0, null, null, null),
            new Check("object", "object", "object-flag", new Value(new MutableStructure()), null, null, null),
            new Check("targeting-match", "string", "targeted-flag", "code-default", null, "email", "admin@example.com"),
            new Check("targeting-default", "string", "targeted-flag", "code-default", null, "email", "someone@example.org"),
            new Check("fractional-red", "string", "fractional-flag", "code-default", "user-9", null, null),
            new Check("fractional-blue", "string", "fractional-flag", "code-default", "user-2", null, null),
            new Check("disabled", "string", "disabled-flag", "code-default", null, null, null),
            new Check("missing", "boolean", "missing-flag", true, null, null, null),
            new Check("type-mismatch", "boolean", "string-flag", true, null, null, null),
            new Check("static-context", "string", "tier-flag", "code-default", null, null, null),
            new Check("before-change", "string", "change-flag", "code-default", null, null, null));

    private static synchronized void emit(Map<String, Object> line) {
        try {
            System.out.println(JSON.writeValueAsString(new TreeMap<>(line)));
        } catch (Exception e) {
            System.out.println("{\"event\":\"error\",\"message\":\"cannot serialize a result\"}");
        }
        System.out.flush();
    }

    /** Turns an SDK Value into plain Java objects that Jackson writes as JSON. */
    private static Object plain(Object value) {
        if (value instanceof Value v) {
            if (v.isNull()) return null;
            if (v.isStructure()) {
                Map<String, Object> out = new TreeMap<>();
                v.asStructure().asMap().forEach((k, inner) -> out.put(k, plain(inner)));
                return out;
            }
            if (v.isList()) {
                List<Object> out = new ArrayList<>();
                v.asList().forEach(inner -> out.add(plain(inner)));
                return out;
            }
            return v.asObject();
        }
        return value;
    }

    private static Map<String, Object> evaluate(Client client, Check c) {
        Map<String, Value> attributes = new HashMap<>();
        if (c.attrKey() != null) attributes.put(c.attrKey(), new Value(c.attrValue()));
        ImmutableContext ctx = new ImmutableContext(c.targetingKey(), attributes);
        FlagEvaluationDetails<?> d = switch (c.method()) {
            case "boolean" -> client.getBooleanDetails(c.key(), (Boolean) c.fallback(), ctx);
            case "string" -> client.getStringDetails(c.key(), (String) c.fallback(), ctx);
            case "integer" -> client.getIntegerDetails(c.key(), (Integer) c.fallback(), ctx);
            case "float" -> client.getDoubleDetails(c.key(), (Double) c.fallback(), ctx);
            default -> client.getObjectDetails(c.key(), (Value) c.fallback(), ctx);
        };
        Map<String, Object> out = new HashMap<>();
        out.put("value", plain(d.getValue()));
        out.put("variant", d.getVariant());
        out.put("reason", d.getReason());
        out.put("error_code", d.getErrorCode() == null ? null : d.getErrorCode().name());
        out.put("error_message", d.getErrorMessage());
        return out;
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>(Map.of("host", "127.0.0.1", "timeout", "30"));
        for (int i = 0; i + 1 < argv.length; i += 2) {
            args.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
        }
        String mode = args.getOrDefault("mode", "");
        if (!List.of("rpc", "in-process", "file").contains(mode) || !args.containsKey("port")) {
            emit(Map.of("event", "error", "message", "usage: --port N --mode rpc|in-process|file --flags PATH"));
            System.exit(2);
        }

        Thread timer = new Thread(() -> {
            try {
                Thread.sleep((long) (Double.parseDouble(args.get("timeout")) * 1000));
            } catch (InterruptedException e) {
                return;
            }
            emit(Map.of("event", "timeout", "waiting_for", waitingFor));
            Runtime.getRuntime().halt(3);
        });
        timer.setDaemon(true);
        timer.start();

        List<List<String>> events = new ArrayList<>();
        OpenFeatureAPI api = OpenFeatureAPI.getInstance();
        api.onProviderConfigurationChanged(details -> {
            synchronized (events) {
                List<String> changed = details.getFlagsChanged();
                events.add(changed == null ? List.of() : new ArrayList<>(changed));
            }
        });

        FlagdOptions.FlagdOptionsBuilder options = FlagdOptions.builder()
                .host(args.get("host"))
                .port(Integer.parseInt(args.get("port")))
                .cacheType("disabled");
        switch (mode) {
            case "rpc" -> options.resolverType(Config.Resolver.RPC);
            case "in-process" -> options.resolverType(Config.Resolver.IN_PROCESS);
            default -> options.resolverType(Config.Resolver.FILE).offlineFlagSourcePath(args.get("flags"));
        }
        if (args.containsKey("deadline-ms")) {
            options.deadline(Integer.parseInt(args.get("deadline-ms")));
        }
        try {
            api.setProviderAndWait(new FlagdProvider(options.build()));
        } catch (RuntimeException e) {
            emit(Map.of("event", "error", "message", String.valueOf(e)));
            Runtime.getRuntime().halt(2);
        }
        Client client = api.getClient();

        for (Check c : CHECKS) {
            waitingFor = "check " + c.name();
            Map<String, Object> result = evaluate(client, c);
            result.put("check", c.name());
            emit(result);
        }

        // Forget the events of the initial load before announcing readiness: the caller edits the file only
        // after "ready", so every event from now on may be the edit's (and it can arrive before the stdin line).
        synchronized (events) {
            events.clear();
        }
        emit(Map.of("event", "ready"));
        waitingFor = "a line on stdin (the caller's signal that the flag file was edited)";
        new BufferedReader(new InputStreamReader(System.in)).readLine();

        waitingFor = "a configuration-change event naming change-flag, then its new value";
        Check change = new Check("change-event", "string", "change-flag", "code-default", null, null, null);
        while (true) {
            TreeSet<String> announced = new TreeSet<>();
            synchronized (events) {
                events.forEach(announced::addAll);
            }
            if (announced.contains("change-flag")) {
                Map<String, Object> result = evaluate(client, change);
                if (!"before".equals(result.get("value"))) {
                    result.put("check", "change-event");
                    result.put("flags_changed", new ArrayList<>(announced));
                    emit(result);
                    break;
                }
            }
            Thread.sleep(50);
        }
        emit(Map.of("event", "done"));
        // The provider's streams and retry threads must not keep the JVM alive.
        Runtime.getRuntime().halt(0);
    }
}
