//! CCP (RFC 1962) for MPPE (RFC 3078 §2): 128-bit keys only, stateless or stateful. MPPE runs
//! both ways or not at all, so both Configure-Requests carry the same bits: we ask for what the
//! policy wants, and answer the client's request with the same choice (Nak with it when the
//! client asked for something else). 40- and 56-bit keys are never agreed to (their keys are
//! broken), nor MPPC compression or any other compressor.
//!
//! The session learns the outcome from [`CcpPolicy::outcome`] once CCP has opened (or was
//! rejected): MPPE and its mode, or plain, or refused where the policy requires MPPE.

use super::fsm::{Negotiator, Verdict};
use crate::wire::{
    ccp::{CcpOption, mppe_bits},
    cp::{RawOption, parse_options},
};

/// `[ppp] mppe`: what the gateway does about encryption.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MppePolicy {
    /// MPPE-128 or no session (what pptpd ships, and what Windows clients expect).
    #[default]
    Require,
    /// Ask for MPPE-128; carry on in plain when the client cannot do it.
    Prefer,
    /// MPPE-128 when the client asks for it (we then ask too: it runs both ways); otherwise
    /// plain. On the wire the same as `prefer` once the client has spoken.
    Allow,
    /// Never: the client's MPPE option is rejected.
    Deny,
}

/// `[ppp] mppe_stateful`: whether stateful MPPE (RFC 3078 §8.2) is agreed to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatefulMppe {
    /// Stateless only: clients are Nak'd to it (the H bit).
    #[default]
    No,
    /// Stateful for a client whose request lacks the H bit; stateless is preferred.
    Allow,
    /// Stateful always: requests with the H bit are Nak'd without it.
    Force,
}

/// What CCP settled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CcpOutcome {
    Mppe { stateful: bool },
    Plain,
}

pub struct CcpPolicy {
    policy: MppePolicy,
    /// MS-CHAPv2 gave us keys (no keys, no MPPE: PAP and CHAP-MD5 sessions).
    have_keys: bool,
    /// Stateful mode (a new key every 256 packets, Reset-Request on loss): never, when the
    /// client will not do stateless, or always.
    stateful: StatefulMppe,
    /// What we ask for (and agree to): MPPE bits, or none.
    want: Option<u32>,
    /// The client's request was acked with MPPE, and ours was acked with MPPE.
    peer_acked_mppe: Option<u32>,
    ours_acked_mppe: bool,
    pub client_offered_mppe: bool,
    /// The MPPE bits the client asked for, for the log line when it leaves over them.
    pub client_mppe_bits: u32,
}

const STATELESS_128: u32 = mppe_bits::STATELESS | mppe_bits::KEY_128;

impl CcpPolicy {
    pub fn new(policy: MppePolicy, have_keys: bool, stateful: StatefulMppe) -> Self {
        let first = if stateful == StatefulMppe::Force {
            mppe_bits::KEY_128
        } else {
            STATELESS_128
        };
        let want = match policy {
            MppePolicy::Require | MppePolicy::Prefer | MppePolicy::Allow if have_keys => {
                Some(first)
            }
            _ => None,
        };
        Self {
            policy,
            have_keys,
            stateful,
            want,
            peer_acked_mppe: None,
            ours_acked_mppe: false,
            client_offered_mppe: false,
            client_mppe_bits: 0,
        }
    }

    /// Whether our Configure-Request asks for MPPE (then the session waits for CCP).
    pub fn asks_for_mppe(&self) -> bool {
        self.want.is_some()
    }

    /// A description of the client's MPPE request, e.g. "stateless 128-bit".
    pub fn describe_client_mppe(&self) -> String {
        let b = self.client_mppe_bits;
        let mut parts = Vec::new();
        if b & mppe_bits::STATELESS != 0 {
            parts.push("stateless");
        }
        for (bit, name) in [
            (mppe_bits::KEY_40, "40-bit"),
            (mppe_bits::KEY_56, "56-bit"),
            (mppe_bits::KEY_128, "128-bit"),
        ] {
            if b & bit != 0 {
                parts.push(name);
            }
        }
        parts.join(" ")
    }

    /// Once CCP has opened: MPPE in both directions with the same bits, or plain. `None` when
    /// the result contradicts the policy (MPPE required but not agreed).
    pub fn outcome(&self) -> Option<CcpOutcome> {
        let mppe = match (self.peer_acked_mppe, self.ours_acked_mppe) {
            (Some(bits), true) => Some(CcpOutcome::Mppe {
                stateful: bits & mppe_bits::STATELESS == 0,
            }),
            _ => None,
        };
        match (mppe, self.policy) {
            (Some(m), _) => Some(m),
            (None, MppePolicy::Require) => None,
            (None, _) => Some(CcpOutcome::Plain),
        }
    }

    /// CCP itself was refused by the client (Protocol-Reject) or never opened: what that means.
    pub fn without_ccp(&self) -> Option<CcpOutcome> {
        (self.policy != MppePolicy::Require).then_some(CcpOutcome::Plain)
    }

    /// The bits we agree to for a client that asked for `bits`.
    fn choose(&self, bits: u32) -> u32 {
        let stateful = match self.stateful {
            StatefulMppe::No => false,
            StatefulMppe::Allow => bits & mppe_bits::STATELESS == 0,
            StatefulMppe::Force => true,
        };
        if stateful {
            mppe_bits::KEY_128
        } else {
            STATELESS_128
        }
    }

    fn mppe_option(bits: u32) -> Vec<u8> {
        let mut v = Vec::new();
        CcpOption::Mppe(bits).emit(&mut v);
        v
    }
}

impl Negotiator for CcpPolicy {
    fn request(&mut self) -> Vec<u8> {
        self.want.map(Self::mppe_option).unwrap_or_default()
    }

    fn check(&mut self, options: &[u8], reject_only: bool) -> Verdict {
        let Ok(raws) = parse_options(options) else {
            return Verdict::Discard;
        };
        self.peer_acked_mppe = None;
        let mut reject = Vec::new();
        let mut mppe = None;
        for raw in &raws {
            match CcpOption::decode(raw) {
                CcpOption::Mppe(bits) => {
                    self.client_offered_mppe = true;
                    self.client_mppe_bits = bits;
                    mppe = Some((bits, raw));
                }
                CcpOption::Other { .. } => raw.emit(&mut reject),
            }
        }
        let usable = self.have_keys && self.policy != MppePolicy::Deny;
        if let Some((_, raw)) = mppe.filter(|_| !usable) {
            raw.emit(&mut reject);
        }
        if !reject.is_empty() {
            return Verdict::Reject(reject);
        }
        match (mppe, self.want) {
            (Some((bits, _)), _) => {
                let chosen = self.choose(bits);
                if bits == chosen {
                    self.peer_acked_mppe = Some(bits);
                    // Both ways or neither: our request follows the client's choice.
                    self.want = Some(chosen);
                    Verdict::Ack
                } else if reject_only {
                    Verdict::Reject(options.to_vec())
                } else {
                    Verdict::Nak(Self::mppe_option(chosen))
                }
            }
            // The client asks for nothing while we must encrypt: suggest MPPE (a Nak may name
            // an option the request lacked, RFC 1661 §5.3).
            (None, Some(want)) if self.policy == MppePolicy::Require && !reject_only => {
                Verdict::Nak(Self::mppe_option(want))
            }
            (None, _) => Verdict::Ack,
        }
    }

    fn acked(&mut self, options: &[u8]) -> bool {
        if options != self.request().as_slice() {
            return false;
        }
        self.ours_acked_mppe = self.want.is_some();
        true
    }

    fn nakked(&mut self, options: &[u8]) -> bool {
        let Ok(raws) = parse_options(options) else {
            return false;
        };
        for raw in &raws {
            if let CcpOption::Mppe(bits) = CcpOption::decode(raw)
                && self.want.is_some()
            {
                // The client suggests other bits: only ever 128-bit, stateless unless allowed.
                self.want = Some(self.choose(bits));
            }
        }
        true
    }

    fn rejected(&mut self, options: &[u8]) -> bool {
        let Ok(raws) = parse_options(options) else {
            return false;
        };
        if raws
            .iter()
            .any(|r: &RawOption<'_>| matches!(CcpOption::decode(r), CcpOption::Mppe(_)))
        {
            // The client will not encrypt: under `require` the session ends when CCP opens
            // without MPPE (see `outcome`).
            self.want = None;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ppp::fsm::{Config, Fsm, Output},
        wire::cp::CpPacket,
    };

    /// pppd require-mppe-128: MPPE option 18, len 6, bits 0x01000040 (stateless, 128-bit).
    const PPPD_STATELESS_128: [u8; 6] = [18, 6, 1, 0, 0, 0x40];

    fn req(id: u8, options: &[u8]) -> Vec<u8> {
        CpPacket {
            code: 1,
            identifier: id,
            data: options,
        }
        .to_bytes()
    }

    fn ack_of_ours(out: &[Output]) -> Vec<u8> {
        let Some(Output::Send {
            identifier, data, ..
        }) = out
            .iter()
            .find(|o| matches!(o, Output::Send { code: 1, .. }))
        else {
            panic!("no Configure-Request in {out:?}")
        };
        CpPacket {
            code: 2,
            identifier: *identifier,
            data,
        }
        .to_bytes()
    }

    #[test]
    fn require_agrees_stateless_128_with_pppd() {
        let mut f = Fsm::new(
            CcpPolicy::new(MppePolicy::Require, true, StatefulMppe::No),
            Config::default(),
        );
        f.open();
        let out = f.up();
        let our_ack = ack_of_ours(&out);
        assert_eq!(
            &our_ack[4..],
            &PPPD_STATELESS_128,
            "we ask for stateless 128-bit"
        );
        let out = f.receive(&CpPacket::parse(&req(1, &PPPD_STATELESS_128)).unwrap());
        assert!(out.contains(&Output::Send {
            code: 2,
            identifier: 1,
            data: PPPD_STATELESS_128.to_vec()
        }));
        let out = f.receive(&CpPacket::parse(&our_ack).unwrap());
        assert!(out.contains(&Output::Up));
        assert_eq!(
            f.negotiator.outcome(),
            Some(CcpOutcome::Mppe { stateful: false })
        );
    }

    #[test]
    fn weak_keys_and_mppc_are_nakked_to_128_bit_and_stateful_only_when_allowed() {
        use StatefulMppe::*;
        for (stateful, asked, chosen) in [
            // 40/56-bit and MPPC offered with 128: Nak to stateless 128 only.
            (No, 0x0100_00e1u32, 0x0100_0040u32),
            // A client that wants stateful (no H bit): stateless unless allowed.
            (No, 0x0000_0040, 0x0100_0040),
            (Allow, 0x0000_0040, 0x0000_0040),
            // Allow prefers stateless when offered; force Naks the H bit away.
            (Allow, 0x0100_0040, 0x0100_0040),
            (Force, 0x0100_0040, 0x0000_0040),
            (Force, 0x0000_0040, 0x0000_0040),
        ] {
            let mut p = CcpPolicy::new(MppePolicy::Require, true, stateful);
            let mut opt = vec![18, 6];
            opt.extend_from_slice(&asked.to_be_bytes());
            let v = p.check(&opt, false);
            if asked == chosen {
                assert_eq!(v, Verdict::Ack);
            } else {
                let mut want = vec![18, 6];
                want.extend_from_slice(&chosen.to_be_bytes());
                assert_eq!(v, Verdict::Nak(want), "{asked:#x}");
            }
        }
    }

    #[test]
    fn policies_against_a_client_without_mppe_and_sessions_without_keys() {
        // A client that rejects our MPPE option and asks for nothing.
        for (policy, have_keys, expect) in [
            (MppePolicy::Require, true, None),
            (MppePolicy::Prefer, true, Some(CcpOutcome::Plain)),
            (MppePolicy::Allow, true, Some(CcpOutcome::Plain)),
            (MppePolicy::Deny, true, Some(CcpOutcome::Plain)),
            (MppePolicy::Prefer, false, Some(CcpOutcome::Plain)),
        ] {
            let mut f = Fsm::new(
                CcpPolicy::new(policy, have_keys, StatefulMppe::No),
                Config::default(),
            );
            f.open();
            let out = f.up();
            let Some(Output::Send {
                identifier, data, ..
            }) = out
                .iter()
                .find(|o| matches!(o, Output::Send { code: 1, .. }))
            else {
                panic!()
            };
            let (id, data) = (*identifier, data.clone());
            // Our request as it stands after the client's answer to it.
            let mut ours = CpPacket {
                code: 2,
                identifier: id,
                data: &data,
            }
            .to_bytes();
            if !data.is_empty() {
                let rej = CpPacket {
                    code: 4,
                    identifier: id,
                    data: &data,
                }
                .to_bytes();
                let out = f.receive(&CpPacket::parse(&rej).unwrap());
                ours = ack_of_ours(&out);
            }
            // CCP opens either way; under `require` its outcome is "no" (the link then ends).
            let out = f.receive(&CpPacket::parse(&req(1, &[])).unwrap());
            let out2 = f.receive(&CpPacket::parse(&ours).unwrap());
            assert!(
                out.contains(&Output::Up) || out2.contains(&Output::Up),
                "{policy:?}: {out:?} {out2:?}"
            );
            assert_eq!(f.negotiator.outcome(), expect, "{policy:?}");
        }
        // deny rejects the client's MPPE option outright.
        let mut p = CcpPolicy::new(MppePolicy::Deny, true, StatefulMppe::No);
        assert_eq!(
            p.check(&PPPD_STATELESS_128, false),
            Verdict::Reject(PPPD_STATELESS_128.to_vec())
        );
        assert!(p.client_offered_mppe);
        assert_eq!(p.describe_client_mppe(), "stateless 128-bit");
    }
}
