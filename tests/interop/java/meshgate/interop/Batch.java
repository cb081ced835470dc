package meshgate.interop;

import java.nio.ByteBuffer;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * docs/wire-format.md §3b: a message of a batch signed once. Its leaf is SHA-256(0x00 ||
 * signed bytes), its path folds to the batch's root (RFC 9162 §2.1.3.2), and the root is
 * verified under the named Ed25519 key as lp("meshgate-batch-v1") || u64be(count) || root.
 */
final class Batch {
    static final String PREFIX = "ed25519-batch:";
    static final String DOMAIN = "meshgate-batch-v1";
    static final int MAX_COUNT = 2048;

    private Batch() {}

    /** The key that signed the batch {@code message} belongs to, or a refusal. */
    static Keyring.Key verify(Wire.Message message, String topic, Keyring ring)
            throws Wire.Refused {
        String[] p = message.text("mesh_sig").split(":", -1);
        String bad = "malformed_signature";
        if (p.length != 5 || !Wire.KEY_ID.matcher(p[1]).matches()
                || !p[2].matches("(0|[1-9][0-9]{0,3})\\.(0|[1-9][0-9]{0,3})")) {
            throw new Wire.Refused(bad, "not 'ed25519-batch:<key_id>:<i>.<n>:<sig>:<path>'");
        }
        int index = Integer.parseInt(p[2].split("\\.")[0]);
        int count = Integer.parseInt(p[2].split("\\.")[1]);
        if (count < 2 || count > MAX_COUNT || index >= count) {
            throw new Wire.Refused(bad, "a batch position " + p[2]);
        }
        byte[] signature;
        byte[] path;
        try {
            signature = Wire.decodeB64url(p[3]);
            path = Wire.decodeB64url(p[4]);
        } catch (IllegalArgumentException e) {
            throw new Wire.Refused(bad, "not canonical base64url");
        }
        if (signature.length != 64 || path.length == 0 || path.length % 32 != 0) {
            throw new Wire.Refused(bad, "a signature of 64 bytes and whole 32-byte hashes");
        }
        Keyring.Key key = ring.get(p[1]);
        byte[] root = root(sha256((byte) 0, Wire.signedBytes(message, topic)), index, count,
                path);
        if (!key.algorithm().equals(Keyring.ED25519) || root == null
                || !Keyring.valid(key, rootMessage(count, root), signature)) {
            throw new Wire.Refused("bad_signature", "the batch signature by " + p[1]
                    + " does not cover this message");
        }
        return key;
    }

    static byte[] root(byte[] leaf, long index, long count, byte[] path) {
        long fn = index;
        long sn = count - 1;
        byte[] node = leaf;
        for (int offset = 0; offset < path.length; offset += 32) {
            if (sn == 0) {
                return null;
            }
            byte[] sibling = java.util.Arrays.copyOfRange(path, offset, offset + 32);
            if ((fn & 1) == 1 || fn == sn) {
                node = sha256((byte) 1, sibling, node);
                while ((fn & 1) == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            } else {
                node = sha256((byte) 1, node, sibling);
            }
            fn >>= 1;
            sn >>= 1;
        }
        return sn == 0 ? node : null;
    }

    static byte[] rootMessage(long count, byte[] root) {
        byte[] domain = Wire.utf8(DOMAIN);
        return ByteBuffer.allocate(8 + domain.length + 8 + root.length).putLong(domain.length)
                .put(domain).putLong(count).put(root).array();
    }

    private static byte[] sha256(byte prefix, byte[]... parts) {
        try {
            MessageDigest digest = MessageDigest.getInstance("SHA-256");
            digest.update(prefix);
            for (byte[] part : parts) {
                digest.update(part);
            }
            return digest.digest();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
