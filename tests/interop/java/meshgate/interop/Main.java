package meshgate.interop;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.io.FileReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.function.Predicate;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * A mesh participant in Java. {@code observe}: read a request and its reply from the broker,
 * check both, and check that a copy with any signed byte changed is refused. {@code call}:
 * send a signed request as its own service and check the reply. {@code vectors}: check the
 * test vectors. {@code events}: read a topic's first {@code --count} events from the broker,
 * check each, and check that a copy of each with one value bit changed is refused. Each prints one JSON object; the exit status is 0 only if every check held.
 */
public final class Main {
    static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (int i = 1; i + 1 < argv.length; i += 2) {
            args.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
        }
        ObjectNode result = switch (argv.length == 0 ? "" : argv[0]) {
            case "observe" -> observe(args);
            case "call" -> call(args);
            case "vectors" -> Vectors.check(new File(args.get("dir")));
            case "events" -> events(args);
            default -> throw new IllegalArgumentException(
                    "usage: observe|call|vectors|events --opt v");
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
            String correlation = request == null ? "" : request.text("mesh_correlation_id");
            reply = first(consumer, List.of(new TopicPartition(replyTopic,
                    Integer.parseInt(args.get("reply-partition")))), deadline,
                    m -> correlation.equals(text(m, "mesh_correlation_id")));
        }
        if (reply == null) {
            throw new IOException("no request and its reply on the broker before the deadline");
        }
        ObjectNode out = JSON.createObjectNode();
        out.set("request", checked(request, requestTopic, ring, args, null));
        out.set("reply", checked(reply, replyTopic, ring, args, request));
        boolean ok = out.path("request").path("verified").asBoolean()
                && out.path("reply").path("verified").asBoolean();
        ArrayNode tampered = out.putArray("tampered");
        for (String role : List.of("request", "reply")) {
            Wire.Message message = role.equals("request") ? request : reply;
            String topic = role.equals("request") ? requestTopic : replyTopic;
            for (String field : Wire.SIGNED) {
                byte[] raw = field.equals("value") ? message.value() : message.header(field);
                if (raw == null || raw.length == 0 || field.equals("topic")) {
                    continue;
                }
                byte[] flipped = raw.clone();
                flipped[flipped.length / 2] ^= 0x01; // one bit of one byte
                Wire.Message copy = field.equals("value")
                        ? new Wire.Message(message.headers(), flipped) : message.with(field, flipped);
                ok &= refused(tampered.addObject().put("record", role).put("field", field),
                        copy, topic, ring);
            }
            ok &= refused(tampered.addObject().put("record", role).put("field", "topic"),
                    message, topic + ".other", ring);
        }
        return out.put("ok", ok);
    }

    static ObjectNode events(Map<String, String> args) throws Exception {
        Keyring ring = keyring(args);
        String topic = args.get("topic");
        int count = Integer.parseInt(args.get("count"));
        long deadline = System.currentTimeMillis() + Long.parseLong(args.get("timeout-ms"));
        List<Wire.Message> seen = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = consumer(args)) {
            List<TopicPartition> all = new ArrayList<>();
            consumer.partitionsFor(topic).forEach(
                    p -> all.add(new TopicPartition(topic, p.partition())));
            first(consumer, all, deadline, m -> seen.add(m) && seen.size() >= count);
        }
        int verified = 0;
        int batchSigned = 0;
        int tamperedRefused = 0;
        ArrayNode refusals = JSON.createArrayNode();
        for (Wire.Message message : seen) {
            String sig = text(message, "mesh_sig");
            batchSigned += sig != null && sig.startsWith(Batch.PREFIX) ? 1 : 0;
            try {
                Checks.admit(message, topic, ring, System.currentTimeMillis(),
                        Long.parseLong(args.get("window-ms")));
                verified++;
            } catch (Wire.Refused refusal) {
                refusals.add(refusal.code + ": " + refusal.getMessage());
            }
            byte[] flipped = message.value().clone();
            flipped[flipped.length / 2] ^= 0x01;
            tamperedRefused += refused(JSON.createObjectNode(),
                    new Wire.Message(message.headers(), flipped), topic, ring) ? 1 : 0;
        }
        ObjectNode out = JSON.createObjectNode().put("events", seen.size())
                .put("verified", verified).put("batch_signed", batchSigned)
                .put("tampered_refused", tamperedRefused);
        out.set("refusals", refusals);
        return out.put("ok", seen.size() == count && verified == count
                && tamperedRefused == count);
    }

    static ObjectNode call(Map<String, String> args) throws Exception {
        Keyring ring = keyring(args);
        String topic = args.get("topic");
        TopicPartition replies = new TopicPartition(args.get("reply-topic"),
                Integer.parseInt(args.get("reply-partition")));
        long now = System.currentTimeMillis();
        long deadline = now + Long.parseLong(args.get("timeout-ms"));
        String id = UUID.randomUUID().toString().replace("-", "");
        List<Map.Entry<String, byte[]>> headers = new ArrayList<>();
        for (String[] header : new String[][] {{"ce_specversion", "1.0"}, {"ce_id", id},
                {"ce_source", args.get("source")}, {"ce_type", args.get("operation")},
                {"ce_time", Wire.formatTime(now)}, {"mesh_kind", "request"},
                {"mesh_attempt", "1"}, {"content-type", "application/json"},
                {"mesh_correlation_id", id}, {"mesh_deadline", Long.toString(deadline)},
                {"mesh_reply_to", replies.topic() + ":" + replies.partition()}}) {
            headers.add(Map.entry(header[0], Wire.utf8(header[1])));
        }
        Wire.Message request = new Wire.Message(headers, Wire.utf8(args.get("payload")));
        byte[] seed = Wire.decodeB64url(Files.readString(Path.of(args.get("key-file"))).strip());
        byte[] signature = Keyring.signEd25519(seed, Wire.signedBytes(request, topic));
        request = request.with("mesh_sig", Wire.utf8(new Wire.Signature(Keyring.ED25519,
                args.get("key-id"), -1, signature).encode()));
        if (args.containsKey("tamper")) { // the negative control: a value byte changed after
            byte[] value = request.value().clone(); // signing
            value[0] ^= 0x01;
            request = new Wire.Message(request.headers(), value);
        }
        ObjectNode out = JSON.createObjectNode().put("request_id", id);
        try (KafkaConsumer<byte[], byte[]> consumer = consumer(args)) {
            consumer.assign(List.of(replies));
            consumer.seekToEnd(List.of(replies));
            consumer.position(replies); // resolved now: the reply comes after this offset
            try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(kafka(args),
                    new ByteArraySerializer(), new ByteArraySerializer())) {
                ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic, request.value());
                request.headers().forEach(h -> record.headers().add(h.getKey(), h.getValue()));
                producer.send(record).get(); // bounded by the producer's delivery.timeout.ms
            }
            Wire.Message reply = first(consumer, null, deadline,
                    m -> id.equals(text(m, "mesh_correlation_id")));
            if (reply == null) {
                return out.put("ok", false).put("reply_missing", true);
            }
            out.set("reply", checked(reply, replies.topic(), ring, args, request));
        }
        return out.put("ok", out.path("reply").path("verified").asBoolean());
    }

    /** What the checks say about {@code message}; {@code request} is set for a reply. */
    static ObjectNode checked(Wire.Message message, String topic, Keyring ring,
            Map<String, String> args, Wire.Message request) throws Wire.Refused {
        ObjectNode node = JSON.createObjectNode();
        for (String name : List.of("ce_id", "ce_source", "ce_type", "mesh_kind",
                "mesh_correlation_id", "mesh_principal")) {
            node.put(name, message.text(name));
        }
        node.put("value", new String(message.value(), StandardCharsets.UTF_8))
                .put("principal_asserted", message.text("mesh_principal_sig") != null);
        try {
            node.put("key_id", Checks.admit(message, topic, ring, System.currentTimeMillis(),
                    Long.parseLong(args.get("window-ms"))).keyId());
            String operation = request == null ? null : request.text("ce_type");
            if (request != null && (!message.text("mesh_kind").matches("reply|error")
                    || !operation.equals(message.text("ce_type"))
                    || !operation.startsWith(message.text("ce_source") + ".")
                    || !request.text("mesh_correlation_id").equals(
                            message.text("mesh_correlation_id")))) { // who may answer the call
                throw new Wire.Refused("reply_refused", "not the owner's reply to this call");
            }
            return node.put("verified", true);
        } catch (Wire.Refused refusal) {
            return node.put("verified", false).put("code", refusal.code)
                    .put("detail", refusal.getMessage());
        }
    }

    static boolean refused(ObjectNode entry, Wire.Message message, String topic, Keyring ring) {
        try {
            Checks.authentic(message, topic, ring);
            entry.put("refused", false);
            return false;
        } catch (Wire.Refused refusal) {
            entry.put("refused", true).put("code", refusal.code);
            return true;
        }
    }

    /** The first record {@code wanted} takes, from the start of {@code partitions} if given
     *  (else from where the consumer is); null if none came before the deadline. */
    static Wire.Message first(KafkaConsumer<byte[], byte[]> consumer,
            List<TopicPartition> partitions, long deadlineMs, Predicate<Wire.Message> wanted) {
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
        return null;
    }

    static String text(Wire.Message message, String name) {
        try {
            return message.text(name);
        } catch (Wire.Refused refusal) {
            return null;
        }
    }

    static KafkaConsumer<byte[], byte[]> consumer(Map<String, String> args) throws IOException {
        Properties config = kafka(args);
        config.put("enable.auto.commit", "false");
        return new KafkaConsumer<>(config, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    /** The client settings: the bootstrap, plus security properties from --kafka-config. */
    static Properties kafka(Map<String, String> args) throws IOException {
        Properties config = new Properties();
        if (args.containsKey("kafka-config")) {
            try (FileReader in = new FileReader(args.get("kafka-config"), StandardCharsets.UTF_8)) {
                config.load(in);
            }
        }
        config.put("bootstrap.servers", args.get("bootstrap"));
        return config;
    }

    static Keyring keyring(Map<String, String> args) throws IOException {
        String hmac = args.get("hmac-keys");
        return Keyring.load(new File(args.get("keyring")), hmac == null ? null : new File(hmac));
    }
}
