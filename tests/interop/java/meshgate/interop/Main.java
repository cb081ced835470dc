package meshgate.interop;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.function.Predicate;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * A mesh participant in Java: {@code observe} reads a request and its reply from the broker
 * and checks both (and that tampered copies fail), {@code call} sends a signed request as its
 * own service and checks the reply, {@code vectors} checks the test vectors. Each prints one
 * JSON object on stdout; the exit status is 0 only when every check held.
 */
public final class Main {
    static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = options(argv);
        ObjectNode result = switch (argv.length == 0 ? "" : argv[0]) {
            case "observe" -> observe(args);
            case "call" -> call(args);
            case "vectors" -> Vectors.check(new File(args.get("dir")));
            default -> throw new IllegalArgumentException("usage: observe|call|vectors --opt v");
        };
        System.out.println(JSON.writeValueAsString(result));
        System.exit(result.path("ok").asBoolean() ? 0 : 1);
    }

    static ObjectNode observe(Map<String, String> args) throws Exception {
        Keyring ring = keyring(args);
        String requestTopic = args.get("request-topic");
        String replyTopic = args.get("reply-topic");
        long deadline = System.currentTimeMillis() + Long.parseLong(args.get("timeout-ms"));
        Wire.Message request;
        Wire.Message reply;
        try (KafkaConsumer<byte[], byte[]> consumer = consumer(args)) {
            List<TopicPartition> all = new ArrayList<>();
            consumer.partitionsFor(requestTopic).forEach(
                    p -> all.add(new TopicPartition(requestTopic, p.partition())));
            request = first(consumer, all, deadline, m -> "request".equals(text(m, "mesh_kind")));
            String correlation = request.text("mesh_correlation_id");
            TopicPartition replies = new TopicPartition(replyTopic,
                    Integer.parseInt(args.get("reply-partition")));
            reply = first(consumer, List.of(replies), deadline,
                    m -> correlation.equals(text(m, "mesh_correlation_id")));
        }
        long now = System.currentTimeMillis();
        long window = Long.parseLong(args.get("window-ms"));
        ObjectNode out = JSON.createObjectNode();
        boolean ok = true;
        out.set("request", checked(request, requestTopic, ring, now, window, null));
        out.set("reply", checked(reply, replyTopic, ring, now, window, request));
        ok &= out.path("request").path("verified").asBoolean()
                && out.path("reply").path("verified").asBoolean();
        ArrayNode tampered = out.putArray("tampered");
        for (Object[] target : new Object[][] {{"request", request, requestTopic},
                {"reply", reply, replyTopic}}) {
            Wire.Message message = (Wire.Message) target[1];
            for (String field : Wire.SIGNED) {
                byte[] raw = field.equals("value") ? message.value() : message.header(field);
                if (field.equals("topic") || raw == null || raw.length == 0) {
                    continue;
                }
                byte[] flipped = raw.clone();
                flipped[flipped.length / 2] ^= 0x01; // one bit of one byte
                Wire.Message copy = field.equals("value")
                        ? new Wire.Message(message.headers(), flipped) : message.with(field, flipped);
                ObjectNode entry = tampered.addObject().put("record", (String) target[0])
                        .put("field", field);
                ok &= refused(entry, () -> Checks.signature(copy, (String) target[2], ring));
            }
            ObjectNode moved = tampered.addObject().put("record", (String) target[0])
                    .put("field", "topic");
            ok &= refused(moved, () -> Checks.signature(message, target[2] + ".other", ring));
        }
        return out.put("ok", ok);
    }

    static ObjectNode call(Map<String, String> args) throws Exception {
        Keyring ring = keyring(args);
        String topic = args.get("topic");
        String replyTopic = args.get("reply-topic");
        TopicPartition replies = new TopicPartition(replyTopic,
                Integer.parseInt(args.get("reply-partition")));
        long timeout = Long.parseLong(args.get("timeout-ms"));
        byte[] secret = Wire.decodeB64url(Files.readString(new File(args.get("key-file"))
                .toPath()).strip());
        String id = UUID.randomUUID().toString().replace("-", "");
        long now = System.currentTimeMillis();
        List<Map.Entry<String, byte[]>> headers = new ArrayList<>();
        for (String[] header : new String[][] {{"ce_specversion", "1.0"}, {"ce_id", id}, {"ce_source", args.get("source")},
                {"ce_type", args.get("operation")}, {"ce_time", Wire.formatTime(now)},
                {"mesh_kind", "request"}, {"mesh_attempt", "1"},
                {"content-type", "application/json"}, {"mesh_correlation_id", id},
                {"mesh_reply_to", replyTopic + ":" + replies.partition()},
                {"mesh_deadline", Long.toString(now + timeout)}}) {
            headers.add(Map.entry(header[0], header[1].getBytes(StandardCharsets.UTF_8)));
        }
        Wire.Message request = new Wire.Message(headers,
                args.get("payload").getBytes(StandardCharsets.UTF_8));
        byte[] signature = Keyring.signEd25519(secret, Wire.signedBytes(request, topic));
        request = request.with(Wire.SIGNATURE, new Wire.Signature(Keyring.ED25519,
                args.get("key-id"), signature).encode().getBytes(StandardCharsets.UTF_8));
        if (args.containsKey("tamper")) { // a negative control: one value byte changed after signing
            byte[] value = request.value().clone();
            value[0] ^= 0x01;
            request = new Wire.Message(request.headers(), value);
        }
        ObjectNode out = JSON.createObjectNode().put("request_id", id);
        try (KafkaConsumer<byte[], byte[]> consumer = consumer(args)) {
            consumer.assign(List.of(replies));
            consumer.seekToEnd(List.of(replies));
            consumer.position(replies); // resolved now: the reply comes after this offset
            send(args, topic, request);
            Wire.Message reply;
            try {
                reply = first(consumer, null, now + timeout,
                        m -> id.equals(text(m, "mesh_correlation_id")));
            } catch (IOException noReply) {
                return out.put("ok", false).put("reply_missing", true);
            }
            out.set("reply", checked(reply, replyTopic, ring, System.currentTimeMillis(),
                    Long.parseLong(args.get("window-ms")), request));
        }
        return out.put("ok", out.path("reply").path("verified").asBoolean());
    }

    /** What the checks say about {@code message}; {@code request} is set for a reply. */
    static ObjectNode checked(Wire.Message message, String topic, Keyring ring, long now,
            long window, Wire.Message request) throws Wire.Refused {
        ObjectNode node = JSON.createObjectNode();
        for (String name : List.of("ce_id", "ce_source", "ce_type", "mesh_kind",
                "mesh_correlation_id", "mesh_principal")) {
            node.put(name, message.text(name));
        }
        node.put("value", new String(message.value(), StandardCharsets.UTF_8));
        node.put("principal_asserted", message.text("mesh_principal_sig") != null);
        try {
            node.put("key_id", Checks.admit(message, topic, ring, now, window).keyId());
            if (request != null) {
                Checks.answers(message, request);
            }
            node.put("verified", true);
        } catch (Wire.Refused refusal) {
            node.put("verified", false).put("code", refusal.code)
                    .put("detail", refusal.getMessage());
        }
        return node;
    }

    interface Check {
        void run() throws Wire.Refused;
    }

    static boolean refused(ObjectNode entry, Check check) {
        try {
            check.run();
            entry.put("refused", false);
            return false;
        } catch (Wire.Refused refusal) {
            entry.put("refused", true).put("code", refusal.code);
            return true;
        }
    }

    /** The first record on {@code partitions} (from their start) that {@code wanted} takes. */
    static Wire.Message first(KafkaConsumer<byte[], byte[]> consumer,
            List<TopicPartition> partitions, long deadlineMs, Predicate<Wire.Message> wanted)
            throws IOException {
        if (partitions != null) {
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
        }
        while (System.currentTimeMillis() < deadlineMs) {
            for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(200))) {
                List<Map.Entry<String, byte[]>> headers = new ArrayList<>();
                for (Header header : record.headers()) {
                    headers.add(Map.entry(header.key(), header.value()));
                }
                Wire.Message message = new Wire.Message(headers,
                        record.value() == null ? new byte[0] : record.value());
                if (wanted.test(message)) {
                    return message;
                }
            }
        }
        throw new IOException("no matching record before the deadline");
    }

    static String text(Wire.Message message, String name) {
        try {
            return message.text(name);
        } catch (Wire.Refused refusal) {
            return null;
        }
    }

    static void send(Map<String, String> args, String topic, Wire.Message message)
            throws Exception {
        Properties config = kafka(args);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(config,
                new ByteArraySerializer(), new ByteArraySerializer())) {
            ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic, message.value());
            for (Map.Entry<String, byte[]> header : message.headers()) {
                record.headers().add(header.getKey(), header.getValue());
            }
            producer.send(record).get(); // bounded by the producer's delivery.timeout.ms
        }
    }

    static KafkaConsumer<byte[], byte[]> consumer(Map<String, String> args) throws IOException {
        Properties config = kafka(args);
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        return new KafkaConsumer<>(config, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    /** The client settings: the bootstrap, plus any security properties from a file. */
    static Properties kafka(Map<String, String> args) throws IOException {
        Properties config = new Properties();
        config.put("bootstrap.servers", args.get("bootstrap"));
        if (args.containsKey("kafka-config")) {
            try (FileInputStream in = new FileInputStream(args.get("kafka-config"))) {
                config.load(in);
            }
        }
        return config;
    }

    static Keyring keyring(Map<String, String> args) throws IOException {
        String hmac = args.get("hmac-keys");
        return Keyring.load(new File(args.get("keyring")), hmac == null ? null : new File(hmac));
    }

    static Map<String, String> options(String[] argv) {
        Map<String, String> options = new HashMap<>();
        for (int i = 1; i + 1 < argv.length; i += 2) {
            if (!argv[i].startsWith("--")) {
                throw new IllegalArgumentException("expected --option, got " + argv[i]);
            }
            options.put(argv[i].substring(2), argv[i + 1]);
        }
        return options;
    }
}
