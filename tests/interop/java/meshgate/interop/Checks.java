package meshgate.interop;

import java.util.List;
import java.util.Set;

/** What a receiver checks on a record before trusting it (docs/wire-format.md). */
final class Checks {
    static final Set<String> KINDS = Set.of("request", "reply", "error", "event");

    private Checks() {}

    /** The envelope rules: required headers, a known kind, a request's reply address. */
    static void envelope(Wire.Message message) throws Wire.Refused {
        for (var header : message.headers()) {
            message.text(header.getKey()); // once each, UTF-8, bounded
        }
        String time = message.text("ce_time");
        if (message.text("ce_specversion") == null && time != null
                && time.matches("[0-9]{1,19}")) {
            throw new Wire.Refused("old_wire_format", "a meshgate-sig-v3 record");
        }
        for (String name : Wire.REQUIRED) {
            String text = message.text(name);
            if (text == null || text.isEmpty()) {
                throw new Wire.Refused("bad_envelope", "missing header " + name);
            }
        }
        if (!"1.0".equals(message.text("ce_specversion"))) {
            throw new Wire.Refused("bad_envelope", "ce_specversion must be 1.0");
        }
        String kind = message.text("mesh_kind");
        if (!KINDS.contains(kind)) {
            throw new Wire.Refused("bad_envelope", "unknown mesh_kind " + kind);
        }
        if (kind.equals("request") && message.text("mesh_reply_to") == null) {
            throw new Wire.Refused("bad_envelope", "a request needs mesh_reply_to");
        }
        if (!kind.equals("request") && !kind.equals("event")
                && message.text("mesh_correlation_id") == null) {
            throw new Wire.Refused("bad_envelope", "a reply needs mesh_correlation_id");
        }
        timeMs(message);
    }

    /** The message's signature, checked for {@code topic}; returns the key that made it. */
    static Keyring.Key signature(Wire.Message message, String topic, Keyring ring)
            throws Wire.Refused {
        Wire.Signature signature = Wire.parseSignature(message.text(Wire.SIGNATURE));
        Keyring.Key key = ring.get(signature.keyId());
        if (!key.algorithm().equals(signature.algorithm())) { // the key decides, not the header
            throw new Wire.Refused("bad_signature", "the key is " + key.algorithm());
        }
        if (!Keyring.valid(key, Wire.signedBytes(message, topic), signature.bytes())) {
            throw new Wire.Refused("bad_signature", "the signature does not match the message");
        }
        if (!key.service().equals(message.text("ce_source"))) {
            throw new Wire.Refused("sender_mismatch", "key " + key.keyId() + " belongs to "
                    + key.service());
        }
        return key;
    }

    /** An operator's countersignature, when the record is a replayed dead letter. */
    static Keyring.Key countersignature(Wire.Message message, String topic, Keyring ring)
            throws Wire.Refused {
        String id = message.text("mesh_replay_id");
        String time = message.text("mesh_replay_time");
        String text = message.text("mesh_replay_sig");
        if (id == null && time == null && text == null) {
            return null;
        }
        String code = "bad_replay_countersignature";
        if (id == null || time == null || text == null || !time.matches("[0-9]{1,19}")
                || !Wire.KEY_ID.matcher(id).matches()) {
            throw new Wire.Refused(code, "replay headers incomplete or malformed");
        }
        if (!"event".equals(message.text("mesh_kind"))) {
            throw new Wire.Refused("replay_not_allowed", "only events are replayed");
        }
        Wire.Signature signature;
        Keyring.Key key;
        try {
            signature = Wire.parseSignature(text);
            key = ring.get(signature.keyId());
        } catch (Wire.Refused refusal) {
            throw new Wire.Refused(code, refusal.getMessage());
        }
        byte[] signed = Wire.countersignBytes(message, topic, id, Long.parseLong(time));
        if (!key.algorithm().equals(signature.algorithm())
                || !Keyring.valid(key, signed, signature.bytes())) {
            throw new Wire.Refused(code, "the countersignature does not match the record");
        }
        return key;
    }

    /** A principal's edge assertion, when the message carries one. */
    static void principal(Wire.Message message, Keyring ring) throws Wire.Refused {
        String principal = message.text("mesh_principal");
        String text = message.text("mesh_principal_sig");
        if (text == null) {
            return; // no principal, or one named by an edge under its own message signature
        }
        if (principal == null) {
            throw new Wire.Refused("bad_principal_assertion", "an assertion without a principal");
        }
        Wire.Assertion assertion = Wire.parseAssertion(text);
        Keyring.Key key = ring.get(assertion.keyId());
        byte[] signed = Wire.assertionBytes(message.header("mesh_principal"),
                assertion.expiresMs());
        if (!key.algorithm().equals(assertion.algorithm())
                || !Keyring.valid(key, signed, assertion.bytes())) {
            throw new Wire.Refused("bad_principal_assertion", "not over this principal");
        }
        String deadline = message.text("mesh_deadline");
        if (message.text("mesh_kind").equals("request")
                && (deadline == null || Long.parseLong(deadline) > assertion.expiresMs())) {
            throw new Wire.Refused("principal_assertion_expired", "the request outlives it");
        }
    }

    /** |now - ce_time| within the window both ways (a replay: its mesh_replay_time); an
     *  event only on the future side (a backlog is genuine). */
    static void fresh(Wire.Message message, long nowMs, long windowMs) throws Wire.Refused {
        String replayed = message.text("mesh_replay_time");
        long age = nowMs - (replayed == null ? timeMs(message) : Long.parseLong(replayed));
        boolean event = "event".equals(message.text("mesh_kind"));
        if (-age > windowMs || (!event && age > windowMs)) {
            throw new Wire.Refused("stale_message", "ce_time is " + age + " ms from now");
        }
    }

    /** Whether {@code reply} answers {@code request}: correlation, operation, its owner. */
    static void answers(Wire.Message reply, Wire.Message request) throws Wire.Refused {
        String correlation = request.text("mesh_correlation_id");
        String operation = request.text("ce_type");
        String owner = operation.substring(0, Math.max(operation.indexOf('.'), 0));
        if (!List.of("reply", "error").contains(reply.text("mesh_kind"))) {
            throw new Wire.Refused("unexpected_kind", "not a reply");
        }
        if (!correlation.equals(reply.text("mesh_correlation_id"))) {
            throw new Wire.Refused("reply_refused", "another call's reply");
        }
        if (!owner.equals(reply.text("ce_source"))) {
            throw new Wire.Refused("unexpected_replier", reply.text("ce_source") + " answered");
        }
        if (!operation.equals(reply.text("ce_type"))) {
            throw new Wire.Refused("unexpected_reply_type", "answered as " + reply.text("ce_type"));
        }
    }

    /** Every check of a received record, in the receivers' order. */
    static Keyring.Key admit(Wire.Message message, String topic, Keyring ring, long nowMs,
            long windowMs) throws Wire.Refused {
        envelope(message);
        Keyring.Key key = signature(message, topic, ring);
        principal(message, ring);
        countersignature(message, topic, ring);
        fresh(message, nowMs, windowMs);
        return key;
    }

    static long timeMs(Wire.Message message) throws Wire.Refused {
        String text = message.text("ce_time");
        if (text == null) {
            throw new Wire.Refused("bad_envelope", "missing header ce_time");
        }
        return Wire.parseTime(text);
    }
}
