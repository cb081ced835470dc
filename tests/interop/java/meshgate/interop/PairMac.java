package meshgate.interop;

import java.io.ByteArrayOutputStream;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.spec.NamedParameterSpec;
import java.security.spec.XECPrivateKeySpec;
import java.security.spec.XECPublicKeySpec;
import java.util.Arrays;
import java.util.Map;
import javax.crypto.KeyAgreement;

/**
 * Per-pair MACs as docs/wire-format.md §3a writes them: X25519 of the two services' Ed25519
 * keys (the secret scalar from SHA-512 of the seed, the peer's u = (1 + y) / (1 - y)), then
 * HKDF-SHA256 and HMAC-SHA256 over the signed bytes. Only the receiver (or whoever holds its
 * seed) can check one.
 */
final class PairMac {
    static final String ALGORITHM = "pair-hmac-sha256";
    private static final BigInteger P = BigInteger.TWO.pow(255).subtract(BigInteger.valueOf(19));
    private static final byte[] SALT = Wire.utf8("meshgate-pair-v1");

    private PairMac() {}

    /** K(sender -> receiver), computed by one end from its seed and the other end's key. */
    static byte[] pairKey(byte[] ownSeed, Keyring.Key own, Keyring.Key peer, boolean sending)
            throws GeneralSecurityException {
        byte[] scalar = Arrays.copyOf(MessageDigest.getInstance("SHA-512").digest(ownSeed), 32);
        KeyFactory factory = KeyFactory.getInstance("XDH");
        KeyAgreement agreement = KeyAgreement.getInstance("XDH");
        agreement.init(factory.generatePrivate(
                new XECPrivateKeySpec(NamedParameterSpec.X25519, scalar)));
        agreement.doPhase(factory.generatePublic(
                new XECPublicKeySpec(NamedParameterSpec.X25519, montgomery(peer.material()))), true);
        byte[] shared = agreement.generateSecret();
        if (Arrays.equals(shared, new byte[shared.length])) {
            throw new GeneralSecurityException("an all-zero shared secret");
        }
        Keyring.Key sender = sending ? own : peer;
        Keyring.Key receiver = sending ? peer : own;
        ByteArrayOutputStream info = new ByteArrayOutputStream();
        for (byte[] part : new byte[][] {Wire.utf8(sender.keyId()), sender.material(),
                Wire.utf8(receiver.keyId()), receiver.material()}) {
            info.writeBytes(ByteBuffer.allocate(8).putLong(part.length).array());
            info.writeBytes(part);
        }
        info.write(1);
        return Keyring.hmac(Keyring.hmac(SALT, shared), info.toByteArray());
    }

    /** The X25519 u-coordinate of an Ed25519 public key (RFC 7748 §4.1), little-endian. */
    static BigInteger montgomery(byte[] edPublic) {
        byte[] bigEndian = new byte[32];
        for (int i = 0; i < 32; i++) {
            bigEndian[i] = edPublic[31 - i];
        }
        bigEndian[0] &= 0x7f; // the sign bit of x
        BigInteger y = new BigInteger(1, bigEndian);
        return BigInteger.ONE.add(y).multiply(BigInteger.ONE.subtract(y).modInverse(P)).mod(P);
    }

    /** A receiver's check of a pair MAC; {@code seeds}: the receiver's own keys by key id. */
    static Keyring.Key open(Wire.Message message, String topic, Keyring ring,
            Map<String, byte[]> seeds) throws Wire.Refused {
        String[] p = message.text("mesh_sig").split(":", -1);
        byte[] mac;
        try {
            mac = p.length == 4 && p[0].equals(ALGORITHM) && Wire.KEY_ID.matcher(p[1]).matches()
                    && Wire.KEY_ID.matcher(p[2]).matches() ? Wire.decodeB64url(p[3]) : null;
        } catch (IllegalArgumentException e) {
            mac = null;
        }
        if (mac == null || mac.length != 32) {
            throw new Wire.Refused("malformed_signature", "not a pair MAC as the format says");
        }
        Keyring.Key sender = ring.get(p[1]);
        if (!sender.algorithm().equals(Keyring.ED25519)) {
            throw new Wire.Refused("bad_signature", sender.keyId() + " makes no pair keys");
        }
        byte[] seed = seeds.get(p[2]);
        if (seed == null) {
            throw new Wire.Refused("pair_key_unknown", "the MAC is for key " + p[2]);
        }
        try {
            byte[] key = pairKey(seed, ring.get(p[2]), sender, false);
            if (!MessageDigest.isEqual(Keyring.hmac(key, Wire.signedBytes(message, topic)), mac)) {
                throw new Wire.Refused("bad_signature", "the pair MAC does not match");
            }
        } catch (GeneralSecurityException e) {
            throw new Wire.Refused("bad_signature", "no pair key: " + e.getMessage());
        }
        if (!sender.service().equals(message.text("ce_source"))) {
            throw new Wire.Refused("sender_mismatch", sender.keyId() + " is " + sender.service()
                    + "'s");
        }
        return sender;
    }
}
