package meshgate.interop;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.File;
import java.io.IOException;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.PKCS8EncodedKeySpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.HashMap;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The keys a receiver trusts, by key id, each owned by one service: the public keyring JSON
 * ({"keys": [{"key_id", "algorithm": "ed25519", "service", "public_key"}]}, raw keys in
 * unpadded base64url) and, optionally, HMAC secrets in the same shape with "secret".
 */
final class Keyring {
    static final String ED25519 = "ed25519";
    static final String HMAC_SHA256 = "hmac-sha256";
    // DER prefixes that wrap a raw 32-byte Ed25519 key (RFC 8410) for the JDK's key specs.
    private static final byte[] X509_PREFIX = hex("302a300506032b6570032100");
    private static final byte[] PKCS8_PREFIX = hex("302e020100300506032b657004220420");

    record Key(String keyId, String algorithm, String service, byte[] material) {}

    private final Map<String, Key> keys = new HashMap<>();

    static Keyring load(File publicKeys, File hmacSecrets) throws IOException {
        Keyring ring = new Keyring();
        ObjectMapper json = new ObjectMapper();
        for (JsonNode entry : json.readTree(publicKeys).path("keys")) {
            String algorithm = entry.path("algorithm").asText();
            if (!algorithm.equals(ED25519)) {
                throw new IOException("a published key must be ed25519, got " + algorithm);
            }
            ring.add(new Key(entry.path("key_id").asText(), ED25519,
                    entry.path("service").asText(),
                    Wire.decodeB64url(entry.path("public_key").asText())));
        }
        if (hmacSecrets != null) {
            for (JsonNode entry : json.readTree(hmacSecrets).path("keys")) {
                ring.add(new Key(entry.path("key_id").asText(), HMAC_SHA256,
                        entry.path("service").asText(),
                        Wire.decodeB64url(entry.path("secret").asText())));
            }
        }
        return ring;
    }

    void add(Key key) {
        int size = key.material().length;
        boolean sized = key.algorithm().equals(ED25519) ? size == 32 : size >= 32;
        if (!sized || key.service().isEmpty()
                || !Wire.KEY_ID.matcher(key.keyId()).matches()) {
            throw new IllegalArgumentException("unusable key " + key.keyId());
        }
        Key known = keys.putIfAbsent(key.keyId(), key);
        if (known != null && !known.equals(key)) {
            throw new IllegalArgumentException("key id " + key.keyId() + " is used twice");
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
            if (key.algorithm().equals(ED25519)) {
                PublicKey publicKey = KeyFactory.getInstance("Ed25519")
                        .generatePublic(new X509EncodedKeySpec(concat(X509_PREFIX, key.material())));
                Signature verifier = Signature.getInstance("Ed25519");
                verifier.initVerify(publicKey);
                verifier.update(message);
                return verifier.verify(signature);
            }
            return MessageDigest.isEqual(hmac(key.material(), message), signature);
        } catch (GeneralSecurityException e) {
            return false; // an unparsable key or signature proves nothing
        }
    }

    /** The Ed25519 signature of {@code message} by the raw 32-byte private key {@code secret}. */
    static byte[] signEd25519(byte[] secret, byte[] message) throws GeneralSecurityException {
        PrivateKey privateKey = KeyFactory.getInstance("Ed25519")
                .generatePrivate(new PKCS8EncodedKeySpec(concat(PKCS8_PREFIX, secret)));
        Signature signer = Signature.getInstance("Ed25519");
        signer.initSign(privateKey);
        signer.update(message);
        return signer.sign();
    }

    static byte[] hmac(byte[] secret, byte[] message) throws GeneralSecurityException {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secret, "HmacSHA256"));
        return mac.doFinal(message);
    }

    private static byte[] concat(byte[] a, byte[] b) {
        byte[] out = new byte[a.length + b.length];
        System.arraycopy(a, 0, out, 0, a.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    private static byte[] hex(String text) {
        byte[] out = new byte[text.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(text.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }
}
