package meshgate.interop;

import java.util.Set;

/** What a receiver checks before trusting a record, in the Python receivers' order. */
final class Checks {
    private Checks() {}

    /** Every check of a received record (the time ones against {@code nowMs}). */
    static Keyring.Key admit(Wire.Message message, String topic, Keyring ring, long nowMs,
            long windowMs) throws Wire.Refused {
        Keyring.Key key = authentic(message, topic, ring);
        String replayed = message.text("mesh_replay_time");
        long age = nowMs - (replayed == null ? timeMs(message) : Long.parseLong(replayed));
        if (-age > windowMs || (!"event".equals(message.text("mesh_kind")) && age > windowMs)) {
            throw new Wire.Refused("stale_message", "ce_time is " + age + " ms from now");
        }
        String assertion = message.text("mesh_principal_sig");
        long expires = assertion == null ? nowMs + 1
                : Wire.parseSignature(assertion, 4, "bad_principal_assertion").expiresMs();
        if (expires - nowMs > 3_660_000) { // an hour at most, plus a minute of clock skew
            throw new Wire.Refused("bad_principal_assertion", "the assertion outlives any call");
        } else if (!"request".equals(message.text("mesh_kind")) && nowMs >= expires) {
            throw new Wire.Refused("principal_assertion_expired", "the assertion has expired");
        }
        return key;
    }

    /** The checks that need no clock: envelope, signature, principal, countersignature. */
    static Keyring.Key authentic(Wire.Message message, String topic, Keyring ring)
            throws Wire.Refused {
        envelope(message);
        String sig = message.text("mesh_sig");
        Keyring.Key key = sig != null && sig.startsWith(Batch.PREFIX)
                ? Batch.verify(message, topic, ring)
                : signature(message, "mesh_sig", 3, Wire.signedBytes(message, topic), ring,
                        "malformed_signature", "bad_signature");
        if (!key.service().equals(message.text("ce_source"))) {
            throw new Wire.Refused("sender_mismatch", key.keyId() + " is " + key.service() + "'s");
        }
        principal(message, ring);
        countersignature(message, topic, ring);
        return key;
    }

    static void envelope(Wire.Message message) throws Wire.Refused {
        for (String name : Wire.KNOWN) {
            message.text(name); // each once, UTF-8, bounded
        }
        String time = message.text("ce_time");
        if (message.text("ce_specversion") == null && time != null && time.matches("[0-9]+")) {
            throw new Wire.Refused("old_wire_format", "a meshgate-sig-v3 record");
        }
        for (String name : Wire.REQUIRED) {
            if (message.text(name) == null || message.text(name).isEmpty()) {
                throw new Wire.Refused("bad_envelope", "missing header " + name);
            }
        }
        String kind = message.text("mesh_kind");
        if (!"1.0".equals(message.text("ce_specversion"))
                || !Set.of("request", "reply", "error", "event").contains(kind)
                || (kind.equals("request") && message.text("mesh_reply_to") == null)
                || (kind.matches("reply|error") && message.text("mesh_correlation_id") == null)
                || !matches(message, "mesh_deadline", "0|-?[1-9][0-9]{0,18}")
                || !matches(message, "mesh_attempt", "[1-9][0-9]{0,18}")
                || !matches(message, "mesh_reply_to", ".+:(0|[1-9][0-9]{0,18})")) {
            throw new Wire.Refused("bad_envelope", "not a " + kind + " as the format says");
        }
        timeMs(message);
    }

    /** Verifies the signature in {@code header} over {@code signed}; the key that made it. */
    static Keyring.Key signature(Wire.Message message, String header, int parts, byte[] signed,
            Keyring ring, String malformed, String bad) throws Wire.Refused {
        Wire.Signature signature = Wire.parseSignature(message.text(header), parts, malformed);
        Keyring.Key key = ring.get(signature.keyId());
        // The key decides the algorithm, never the header.
        if (!key.algorithm().equals(signature.algorithm())
                || !Keyring.valid(key, parts == 4 ? Wire.assertionBytes(
                        message.header("mesh_principal"), signature.expiresMs()) : signed,
                        signature.bytes())) {
            throw new Wire.Refused(bad, "the signature by " + key.keyId() + " does not match");
        }
        return key;
    }

    /** A principal's edge assertion, when the message carries one. */
    static void principal(Wire.Message message, Keyring ring) throws Wire.Refused {
        String code = "bad_principal_assertion";
        if (message.text("mesh_principal_sig") == null) {
            return; // no principal, or one named by an edge under its own message signature
        } else if (message.text("mesh_principal") == null) {
            throw new Wire.Refused(code, "an assertion without a principal");
        }
        try {
            signature(message, "mesh_principal_sig", 4, null, ring, code, code);
        } catch (Wire.Refused refusal) {
            throw new Wire.Refused(code, refusal.getMessage()); // an unknown key included
        }
        long expires = Wire.parseSignature(message.text("mesh_principal_sig"), 4, code).expiresMs();
        String deadline = message.text("mesh_deadline");
        if ("request".equals(message.text("mesh_kind"))
                && (deadline == null || Long.parseLong(deadline) > expires)) {
            throw new Wire.Refused("principal_assertion_expired", "the request outlives it");
        }
    }

    /** An operator's countersignature, when the record is a replayed dead letter. */
    static void countersignature(Wire.Message message, String topic, Keyring ring)
            throws Wire.Refused {
        String id = message.text("mesh_replay_id");
        String time = message.text("mesh_replay_time");
        String code = "bad_replay_countersignature";
        if (id == null && time == null && message.text("mesh_replay_sig") == null) {
            return;
        } else if (id == null || time == null || !time.matches("0|[1-9][0-9]{0,18}")
                || !Wire.KEY_ID.matcher(id).matches()) {
            throw new Wire.Refused(code, "replay headers incomplete or malformed");
        } else if (!"event".equals(message.text("mesh_kind"))) {
            throw new Wire.Refused("replay_not_allowed", "only events are replayed");
        }
        try {
            signature(message, "mesh_replay_sig", 3,
                    Wire.countersignBytes(message, topic, id, Long.parseLong(time)), ring, code, code);
        } catch (Wire.Refused refusal) {
            throw new Wire.Refused(code, refusal.getMessage());
        }
    }

    private static boolean matches(Wire.Message message, String header, String regex)
            throws Wire.Refused {
        String text = message.text(header);
        return text == null || text.matches(regex);
    }

    static long timeMs(Wire.Message message) throws Wire.Refused {
        return Wire.parseTime(message.text("ce_time"));
    }
}
