package meshgate.interop;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.io.IOException;
import java.security.GeneralSecurityException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/**
 * The test vectors under tests/vectors/: each valid message's signed bytes (and its principal
 * assertion's and replay countersignature's) are rebuilt here and must equal the file's, it
 * must verify, and signing it again with the vector's key must give the file's signature;
 * each tampered record must get the file's refusal code, or pass where it says "valid".
 */
final class Vectors {
    private static final HexFormat HEX = HexFormat.of();

    private Vectors() {}

    static ObjectNode check(File dir) throws IOException, GeneralSecurityException,
            Wire.Refused {
        Keyring ring = Keyring.load(new File(dir, "keyring.json"), null);
        JsonNode keys = Main.JSON.readTree(new File(dir, "keys.json"));
        for (JsonNode entry : keys.path(Keyring.HMAC_SHA256)) {
            ring.add(entry, Keyring.HMAC_SHA256, entry.path("secret_b64url").asText());
        }
        JsonNode file = Main.JSON.readTree(new File(dir, "messages.json"));
        boolean ok = Wire.DOMAIN.equals(file.path("signature_domain").asText());
        ObjectNode out = Main.JSON.createObjectNode();
        ArrayNode messages = out.putArray("messages");
        for (JsonNode vector : file.path("messages")) {
            ObjectNode result = messages.addObject().put("name", vector.path("name").asText());
            String topic = vector.path("topic").asText();
            Wire.Message message = record(vector);
            try {
                byte[] signed = Wire.signedBytes(message, topic);
                result.put("signed_bytes", same(signed, vector.path("signed_bytes_hex")));
                Keyring.Key key = Checks.authentic(message, topic, ring);
                result.put("verified", true).put("same_signature", Wire.encodeB64url(
                        sign(key, keys, signed)).equals(vector.path("signature_b64url").asText()));
                JsonNode assertion = vector.path("principal_assertion");
                if (!assertion.isMissingNode()) {
                    result.put("assertion_bytes", same(Wire.assertionBytes(message.header(
                            "mesh_principal"), assertion.path("expires_ms").asLong()),
                            assertion.path("signed_bytes_hex")));
                }
                JsonNode replay = vector.path("replay_countersignature");
                if (!replay.isMissingNode()) {
                    result.put("countersign_bytes", same(Wire.countersignBytes(message, topic,
                            replay.path("replay_id").asText(), replay.path("replay_time_ms")
                            .asLong()), replay.path("signed_bytes_hex")));
                }
            } catch (Wire.Refused refusal) {
                result.put("verified", false).put("code", refusal.code);
            }
            for (Map.Entry<String, JsonNode> field : result.properties()) {
                ok &= !field.getValue().isBoolean() || field.getValue().asBoolean();
            }
        }
        ArrayNode tampered = out.putArray("tampered");
        ok &= checkRecords(new File(dir, "tampered.json"), ring, tampered);
        JsonNode batchFile = Main.JSON.readTree(new File(dir, "batch.json"));
        ok &= Batch.DOMAIN.equals(batchFile.path("batch_domain").asText());
        ArrayNode batch = out.putArray("batch");
        ok &= checkRecords(new File(dir, "batch.json"), ring, batch);
        ArrayNode pairs = out.putArray("pair");
        for (JsonNode vector : Main.JSON.readTree(new File(dir, "pair.json")).path("vectors")) {
            ok &= checkPair(vector, ring, keys, pairs.addObject());
        }
        return out.put("ok", ok && !messages.isEmpty() && !tampered.isEmpty()
                && !pairs.isEmpty() && !batch.isEmpty());
    }

    /** Each record of {@code file} gets the file's refusal code, or passes where it says so. */
    private static boolean checkRecords(File file, Keyring ring, ArrayNode results)
            throws IOException {
        boolean ok = true;
        for (JsonNode vector : Main.JSON.readTree(file).path("records")) {
            String got = "valid";
            try {
                Checks.authentic(record(vector), vector.path("topic").asText(), ring);
            } catch (Wire.Refused refusal) {
                got = refusal.code;
            }
            ok &= got.equals(vector.path("expect").asText());
            results.addObject().put("name", vector.path("name").asText()).put("got", got);
        }
        return ok;
    }

    /** A pair-MAC vector, opened with its receiver's seed only; a valid one's pair key made
     * again from the sender's side and from the receiver's must equal the file's. */
    private static boolean checkPair(JsonNode vector, Keyring ring, JsonNode keys,
            ObjectNode result) throws GeneralSecurityException, Wire.Refused {
        String topic = vector.path("topic").asText();
        String receiverId = vector.path("receiver").path("key_id").asText();
        Map<String, byte[]> seeds = seeds(keys);
        Wire.Message message = record(vector);
        String got = "valid";
        try {
            Checks.envelope(message);
            Keyring.Key sender = PairMac.open(message, topic, ring,
                    Map.of(receiverId, seeds.get(receiverId)));
            Keyring.Key receiver = ring.get(receiverId);
            String atSender = HEX.formatHex(PairMac.pairKey(seeds.get(sender.keyId()), sender,
                    receiver, true));
            String atReceiver = HEX.formatHex(PairMac.pairKey(seeds.get(receiverId), receiver,
                    sender, false));
            result.put("same_pair_key", atSender.equals(atReceiver)
                    && atSender.equals(vector.path("pair_key_hex").asText()));
        } catch (Wire.Refused refusal) {
            got = refusal.code;
        }
        result.put("name", vector.path("name").asText()).put("got", got)
                .put("signed_bytes", same(Wire.signedBytes(message, topic),
                        vector.path("signed_bytes_hex")));
        return got.equals(vector.path("expect").asText())
                && result.path("signed_bytes").asBoolean()
                && result.path("same_pair_key").asBoolean(true);
    }

    private static Map<String, byte[]> seeds(JsonNode keys) {
        Map<String, byte[]> seeds = new java.util.HashMap<>();
        for (JsonNode entry : keys.path(Keyring.ED25519)) {
            seeds.put(entry.path("key_id").asText(),
                    HEX.parseHex(entry.path("private_seed_hex").asText()));
        }
        return seeds;
    }

    /** The vector's signature made again here, with its private key from keys.json. */
    private static byte[] sign(Keyring.Key key, JsonNode keys, byte[] signed)
            throws GeneralSecurityException {
        for (JsonNode entry : keys.path(key.algorithm())) {
            if (entry.path("key_id").asText().equals(key.keyId())) {
                return key.algorithm().equals(Keyring.ED25519)
                        ? Keyring.signEd25519(HEX.parseHex(entry.path("private_seed_hex").asText()),
                                signed)
                        : Keyring.hmac(HEX.parseHex(entry.path("secret_hex").asText()), signed);
            }
        }
        throw new GeneralSecurityException("no private key for " + key.keyId());
    }

    private static boolean same(byte[] bytes, JsonNode hex) {
        return HEX.formatHex(bytes).equals(hex.asText());
    }

    private static Wire.Message record(JsonNode vector) {
        List<Map.Entry<String, byte[]>> headers = new ArrayList<>();
        vector.path("headers").forEach(
                h -> headers.add(Map.entry(h.get(0).asText(), Wire.utf8(h.get(1).asText()))));
        return new Wire.Message(headers, Wire.utf8(vector.path("value").asText()));
    }
}
