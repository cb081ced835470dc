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

    static ObjectNode check(File dir) throws IOException, GeneralSecurityException {
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
        for (JsonNode vector : Main.JSON.readTree(new File(dir, "tampered.json")).path("records")) {
            String got = "valid";
            try {
                Checks.authentic(record(vector), vector.path("topic").asText(), ring);
            } catch (Wire.Refused refusal) {
                got = refusal.code;
            }
            ok &= got.equals(vector.path("expect").asText());
            tampered.addObject().put("name", vector.path("name").asText()).put("got", got);
        }
        return out.put("ok", ok && !messages.isEmpty() && !tampered.isEmpty());
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
