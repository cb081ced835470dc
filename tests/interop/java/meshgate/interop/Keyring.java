package meshgate.interop;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.File;
import java.io.IOException;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.Signature;
import java.security.spec.PKCS8EncodedKeySpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The keys a receiver trusts, by key id, each owned by one service: the keyring JSON
 * {"keys": [{"key_id", "algorithm": "ed25519", "service", "public_key"}]} (raw keys, unpadded
 * base64url) and, optionally, HMAC secrets {"keys": [{"key_id", "service", "secret"}]}.
 */
final class Keyring {
    static final String ED25519 = "ed25519";
    static final String HMAC_SHA256 = "hmac-sha256";
    // DER prefixes that wrap a raw 32-byte Ed25519 key (RFC 8410) for the JDK's key specs.
    private static final byte[] X509 = HexFormat.of().parseHex("302a300506032b6570032100");
    private static final byte[] PKCS8 = HexFormat.of().parseHex("302e020100300506032b657004220420");

    record Key(String keyId, String algorithm, String service, byte[] material) {}

    private final Map<String, Key> keys = new HashMap<>();

    static Keyring load(File publicKeys, File hmacSecrets) throws IOException {
        Keyring ring = new Keyring();
        for (JsonNode entry : Main.JSON.readTree(publicKeys).path("keys")) {
            if (!ED25519.equals(entry.path("algorithm").asText())) {
                throw new IOException("a published key must be ed25519: " + entry);
            }
            ring.add(entry, ED25519, entry.path("public_key").asText());
        }
        if (hmacSecrets != null) {
            for (JsonNode entry : Main.JSON.readTree(hmacSecrets).path("keys")) {
                ring.add(entry, HMAC_SHA256, entry.path("secret").asText());
            }
        }
        return ring;
    }

    void add(JsonNode entry, String algorithm, String material) {
        Key key = new Key(entry.path("key_id").asText(), algorithm,
                entry.path("service").asText(), Wire.decodeB64url(material));
        int size = key.material().length;
        if (!(algorithm.equals(ED25519) ? size == 32 : size >= 32) || key.service().isEmpty()
                || !Wire.KEY_ID.matcher(key.keyId()).matches()
                || keys.putIfAbsent(key.keyId(), key) != null) {
            throw new IllegalArgumentException("unusable or repeated key " + key.keyId());
        }
    }

    Key get(String keyId) throws Wire.Refused {
        Key key = keys.get(keyId);
        if (key == null) {
            throw new Wire.Refused("unknown_key_id", "unknown key id " + keyId);
        }
        return key;
    }

    /** Whether {@code signature} is {@code key}'s over {@code message} (constant time for HMAC). */
    static boolean valid(Key key, byte[] message, byte[] signature) {
        try {
            if (key.algorithm().equals(HMAC_SHA256)) {
                return MessageDigest.isEqual(hmac(key.material(), message), signature);
            }
            Signature verifier = Signature.getInstance("Ed25519");
            verifier.initVerify(KeyFactory.getInstance("Ed25519")
                    .generatePublic(new X509EncodedKeySpec(concat(X509, key.material()))));
            verifier.update(message);
            return verifier.verify(signature);
        } catch (GeneralSecurityException e) {
            return false; // an unusable key or signature proves nothing
        }
    }

    /** The Ed25519 signature of {@code message} by the raw 32-byte private key {@code seed}. */
    static byte[] signEd25519(byte[] seed, byte[] message) throws GeneralSecurityException {
        Signature signer = Signature.getInstance("Ed25519");
        signer.initSign(KeyFactory.getInstance("Ed25519")
                .generatePrivate(new PKCS8EncodedKeySpec(concat(PKCS8, seed))));
        signer.update(message);
        return signer.sign();
    }

    static byte[] hmac(byte[] secret, byte[] message) throws GeneralSecurityException {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secret, "HmacSHA256"));
        return mac.doFinal(message);
    }

    private static byte[] concat(byte[] a, byte[] b) {
        byte[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
