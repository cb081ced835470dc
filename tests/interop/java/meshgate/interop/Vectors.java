package meshgate.interop;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/**
 * The test vectors under tests/vectors/ (docs/wire-format.md): every valid message's signed
 * bytes are rebuilt here and must equal the file's, its signature (and principal assertion,
 * and replay countersignature) must verify, and signing the same bytes with the vector's key
 * must give the same signature; every tampered record must be refused with the file's code,
 * or accepted where the file says "valid".
 */
final class Vectors {
    private static final HexFormat HEX = HexFormat.of();

    private Vectors() {}

    static ObjectNode check(File dir) throws IOException, GeneralSecurityException {
        Keyring ring = Keyring.load(new File(dir, "keyring.json"), null);
        JsonNode keys = Main.JSON.readTree(new File(dir, "keys.json"));
        for (JsonNode entry : keys.path("hmac-sha256")) {
            ring.add(new Keyring.Key(entry.path("key_id").asText(), Keyring.HMAC_SHA256,
                    entry.path("service").asText(), HEX.parseHex(entry.path("secret_hex").asText())));
        }
        ObjectNode out = Main.JSON.createObjectNode();
        boolean ok = true;
        ArrayNode messages = out.putArray("messages");
        JsonNode file = Main.JSON.readTree(new File(dir, "messages.json"));
        ok &= Wire.DOMAIN.equals(file.path("signature_domain").asText());
        for (JsonNode vector : file.path("messages")) {
            ObjectNode result = messages.addObject().put("name", vector.path("name").asText());
            ok &= message(vector, ring, keys, result);
        }
        ArrayNode tampered = out.putArray("tampered");
        for (JsonNode vector : Main.JSON.readTree(new File(dir, "tampered.json")).path("records")) {
            String expect = vector.path("expect").asText();
            String got = "valid";
            try {
                admit(record(vector), vector.path("topic").asText(), ring);
            } catch (Wire.Refused refusal) {
                got = refusal.code;
            }
            tampered.addObject().put("name", vector.path("name").asText())
                    .put("expect", expect).put("got", got);
            ok &= expect.equals(got);
        }
        return out.put("ok", ok && messages.size() > 0 && tampered.size() > 0);
    }

    /** Checks one valid message vector; records what held in {@code result}. */
    private static boolean message(JsonNode vector, Keyring ring, JsonNode keys,
            ObjectNode result) throws GeneralSecurityException {
        String topic = vector.path("topic").asText();
        Wire.Message message = record(vector);
        try {
            byte[] signed = Wire.signedBytes(message, topic);
            result.put("signed_bytes", HEX.formatHex(signed)
                    .equals(vector.path("signed_bytes_hex").asText()));
            Keyring.Key key = admit(message, topic, ring);
            result.put("verified", true).put("key_id", key.keyId());
            byte[] again = sign(key, keys, signed);
            result.put("same_signature", Wire.encodeB64url(again)
                    .equals(vector.path("signature_b64url").asText()));
            JsonNode assertion = vector.path("principal_assertion");
            if (!assertion.isMissingNode()) {
                byte[] bytes = Wire.assertionBytes(message.header("mesh_principal"),
                        assertion.path("expires_ms").asLong());
                result.put("assertion_bytes", HEX.formatHex(bytes)
                        .equals(assertion.path("signed_bytes_hex").asText()));
            }
            JsonNode replay = vector.path("replay_countersignature");
            if (!replay.isMissingNode()) {
                byte[] bytes = Wire.countersignBytes(message, topic,
                        replay.path("replay_id").asText(), replay.path("replay_time_ms").asLong());
                result.put("countersign_bytes", HEX.formatHex(bytes)
                        .equals(replay.path("signed_bytes_hex").asText()));
            }
        } catch (Wire.Refused refusal) {
            result.put("verified", false).put("code", refusal.code)
                    .put("detail", refusal.getMessage());
        }
        boolean ok = true;
        for (Map.Entry<String, JsonNode> field : result.properties()) {
            if (field.getValue().isBoolean()) {
                ok &= field.getValue().asBoolean();
            }
        }
        return ok;
    }

    /** What a receiver checks, without freshness (the vectors' times are fixed). */
    private static Keyring.Key admit(Wire.Message message, String topic, Keyring ring)
            throws Wire.Refused {
        Checks.envelope(message);
        Keyring.Key key = Checks.signature(message, topic, ring);
        Checks.principal(message, ring);
        Checks.countersignature(message, topic, ring);
        return key;
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

    private static Wire.Message record(JsonNode vector) {
        List<Map.Entry<String, byte[]>> headers = new ArrayList<>();
        for (JsonNode header : vector.path("headers")) {
            headers.add(Map.entry(header.get(0).asText(),
                    header.get(1).asText().getBytes(StandardCharsets.UTF_8)));
        }
        return new Wire.Message(headers, vector.path("value").asText()
                .getBytes(StandardCharsets.UTF_8));
    }
}
