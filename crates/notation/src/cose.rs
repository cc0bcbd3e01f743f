//! The Notary Project COSE envelope (signature-envelope-cose.md): a `COSE_Sign1_Tagged`
//! (tag 18) whose payload is the same `{"targetArtifact": descriptor}` JSON as the JWS one;
//! protected header `alg` (1), `crit` (2), content type (3) = the notary payload type,
//! `io.cncf.notary.signingScheme` and `io.cncf.notary.signingTime` (an epoch time, tag 1),
//! optional critical `io.cncf.notary.expiry`; unprotected `x5chain` (33, leaf first) and
//! `io.cncf.notary.signingAgent`. The signature is over the RFC 9052 `Sig_structure`
//! `["Signature1", protected bytes, h'', payload]` with no external AAD.
//!
//! Only the envelope lives here: the chain, trust store, identity and time checks are
//! [`crate::policy`]'s, shared with JWS through [`Envelope`].

use coset::cbor::value::Value;
use coset::{
    ContentType, CoseSign1, CoseSign1Builder, HeaderBuilder, Label, RegisteredLabelWithPrivate,
    TaggedCborSerializable as _, iana,
};

use crate::cert::Cert;
use crate::envelope::Envelope;
use crate::jws::{EXPIRY, SCHEME_X509, SIGNING_AGENT, SIGNING_SCHEME, SIGNING_TIME, Signer};
use crate::{Descriptor, PAYLOAD_CTY, Result, err};

/// The `x5chain` header label (IANA COSE header parameters).
pub const X5CHAIN: i64 = 33;

fn cose_err(e: coset::CoseError) -> crate::Error {
    crate::Error(format!("the envelope is not a COSE_Sign1 message: {e}"))
}

/// The COSE algorithm of a JWS algorithm name (the same key → algorithm mapping,
/// signature-specification.md "Algorithm Selection").
fn cose_alg(jws: &str) -> Result<iana::Algorithm> {
    Ok(match jws {
        "ES256" => iana::Algorithm::ES256,
        "ES384" => iana::Algorithm::ES384,
        "PS256" => iana::Algorithm::PS256,
        "PS384" => iana::Algorithm::PS384,
        "PS512" => iana::Algorithm::PS512,
        _ => return err(format!("alg {jws} has no COSE equivalent here")),
    })
}

/// The JWS name of a COSE `alg` value, for the shared key/alg match in [`crate::cert`].
fn jws_alg(alg: &coset::Algorithm) -> Result<&'static str> {
    Ok(match alg {
        RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES256) => "ES256",
        RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES384) => "ES384",
        RegisteredLabelWithPrivate::Assigned(iana::Algorithm::PS256) => "PS256",
        RegisteredLabelWithPrivate::Assigned(iana::Algorithm::PS384) => "PS384",
        RegisteredLabelWithPrivate::Assigned(iana::Algorithm::PS512) => "PS512",
        other => return err(format!("COSE alg {other:?} is not supported")),
    })
}

/// CBOR tag 1, epoch-based date/time (RFC 8949 §3.4.2), whole seconds as the spec advises.
fn epoch_time(unix: i64) -> Value {
    Value::Tag(1, Box::new(Value::Integer(unix.into())))
}

/// An epoch time: tag 1 over an integer or a float (the fraction dropped), or a bare integer
/// (notation-core-go's conformance data writes them untagged).
fn read_time(name: &str, v: &Value) -> Result<i64> {
    let inner = match v {
        Value::Tag(1, inner) => inner.as_ref(),
        Value::Tag(t, _) => return err(format!("{name} has CBOR tag {t}, not 1 (epoch time)")),
        other => other,
    };
    match inner {
        Value::Integer(i) => {
            i64::try_from(*i).map_err(|_| crate::Error(format!("{name} is out of range")))
        }
        Value::Float(f) if f.is_finite() && f.abs() < 1e15 => Ok(f.floor() as i64),
        _ => err(format!("{name} is not an epoch date/time")),
    }
}

fn text_label<'a>(rest: &'a [(Label, Value)], name: &str) -> Option<&'a Value> {
    rest.iter()
        .find(|(l, _)| matches!(l, Label::Text(t) if t == name))
        .map(|(_, v)| v)
}

fn int_label(rest: &[(Label, Value)], n: i64) -> Option<&Value> {
    rest.iter()
        .find(|(l, _)| *l == Label::Int(n))
        .map(|(_, v)| v)
}

impl Signer {
    /// The COSE envelope (`application/cose`) signing `target` at `signing_time` (unix
    /// seconds), by `agent`.
    pub fn sign_cose(
        &self,
        target: &Descriptor,
        signing_time: i64,
        agent: &str,
    ) -> Result<Vec<u8>> {
        sign(self, target, signing_time, agent)
    }

    /// The envelope of `format` (see [`Signer::sign`] and [`Signer::sign_cose`]).
    pub fn sign_envelope(
        &self,
        format: crate::Format,
        target: &Descriptor,
        signing_time: i64,
        agent: &str,
    ) -> Result<Vec<u8>> {
        match format {
            crate::Format::Jws => self.sign(target, signing_time, agent),
            crate::Format::Cose => self.sign_cose(target, signing_time, agent),
        }
    }
}

fn sign(signer: &Signer, target: &Descriptor, signing_time: i64, agent: &str) -> Result<Vec<u8>> {
    let payload = serde_json::to_vec(&serde_json::json!({ "targetArtifact": target }))
        .map_err(|e| crate::Error(e.to_string()))?;
    let protected = HeaderBuilder::new()
        .algorithm(cose_alg(signer.alg())?)
        .add_critical_label(RegisteredLabelWithPrivate::Text(SIGNING_SCHEME.into()))
        .content_type(PAYLOAD_CTY.into())
        .text_value(SIGNING_SCHEME.into(), Value::Text(SCHEME_X509.into()))
        .text_value(SIGNING_TIME.into(), epoch_time(signing_time))
        .build();
    let x5chain = signer
        .chain()
        .iter()
        .map(|c| Value::Bytes(c.der.clone()))
        .collect();
    let unprotected = HeaderBuilder::new()
        .value(X5CHAIN, Value::Array(x5chain))
        .text_value(SIGNING_AGENT.into(), Value::Text(agent.into()))
        .build();
    CoseSign1Builder::new()
        .protected(protected)
        .unprotected(unprotected)
        .payload(payload)
        .try_create_signature(b"", |tbs| signer.sign_raw(tbs))?
        .build()
        .to_tagged_vec()
        .map_err(cose_err)
}

/// Parses a `COSE_Sign1_Tagged` envelope and checks its integrity: the headers the spec
/// requires (every critical one understood), the signature over the `Sig_structure` with the
/// `x5chain` leaf's key (whose kind must match `alg`), and a payload naming a target artifact.
pub fn verify_integrity(bytes: &[u8]) -> Result<Envelope> {
    let msg = CoseSign1::from_tagged_slice(bytes).map_err(cose_err)?;
    let h = &msg.protected.header;
    let Some(alg) = &h.alg else {
        return err("protected header without alg");
    };
    let alg = jws_alg(alg)?;
    if h.content_type != Some(ContentType::Text(PAYLOAD_CTY.into())) {
        return err(format!(
            "protected header content type is not {PAYLOAD_CTY}"
        ));
    }
    let scheme = match text_label(&h.rest, SIGNING_SCHEME) {
        Some(Value::Text(s)) => s.clone(),
        _ => String::new(),
    };
    if scheme != SCHEME_X509 {
        return err(format!(
            "signing scheme {scheme:?} is not supported (only {SCHEME_X509} is)"
        ));
    }
    if h.crit.is_empty() {
        return err("protected header without crit");
    }
    let mut crit = Vec::new();
    for c in &h.crit {
        match c {
            RegisteredLabelWithPrivate::Text(t) => crit.push(t.as_str()),
            // The spec allows no integer labels in crit beyond 0..8, which need no listing.
            other => return err(format!("critical header {other:?} is not understood")),
        }
    }
    crate::envelope::check_critical(&crit, |k| text_label(&h.rest, k).is_some())?;
    let signing_time = read_time(
        SIGNING_TIME,
        text_label(&h.rest, SIGNING_TIME)
            .ok_or_else(|| crate::Error(format!("no {SIGNING_TIME}")))?,
    )?;
    let expiry = text_label(&h.rest, EXPIRY)
        .map(|v| read_time(EXPIRY, v))
        .transpose()?;
    // x5chain is unprotected as notation writes it; the spec allows it protected too.
    let x5chain = int_label(&msg.unprotected.rest, X5CHAIN)
        .or_else(|| int_label(&h.rest, X5CHAIN))
        .ok_or_else(|| crate::Error("no x5chain header".into()))?;
    let ders: Vec<&Vec<u8>> = match x5chain {
        // draft-ietf-cose-x509: one certificate may stand alone as a bstr.
        Value::Bytes(b) => vec![b],
        Value::Array(a) => a
            .iter()
            .map(|v| match v {
                Value::Bytes(b) => Ok(b),
                _ => err("an x5chain entry is not a byte string"),
            })
            .collect::<Result<_>>()?,
        _ => return err("x5chain is neither a byte string nor an array"),
    };
    if ders.is_empty() {
        return err("x5chain is empty");
    }
    let chain = ders
        .into_iter()
        .map(|d| Cert::from_der(d))
        .collect::<Result<Vec<_>>>()?;
    let Some(payload) = &msg.payload else {
        return err("the envelope has a detached payload");
    };
    msg.verify_signature(b"", |sig, tbs| chain[0].verify_jws(alg, tbs, sig))?;
    let payload: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| crate::Error(format!("the payload is not JSON: {e}")))?;
    let target: Descriptor =
        serde_json::from_value(payload["targetArtifact"].clone()).map_err(|e| {
            crate::Error(format!(
                "the payload's targetArtifact is not a descriptor: {e}"
            ))
        })?;
    let signing_agent = match text_label(&msg.unprotected.rest, SIGNING_AGENT) {
        Some(Value::Text(s)) => Some(s.clone()),
        _ => None,
    };
    Ok(Envelope {
        alg: alg.to_owned(),
        signing_scheme: scheme,
        signing_time,
        expiry,
        signing_agent,
        chain,
        target,
    })
}
