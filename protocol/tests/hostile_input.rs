//! Hostile input: OSC packets and set files that must be refused cleanly, never
//! panic. Add a file to `tests/corpus/osc` (raw packet bytes; `ok-` names must be
//! accepted) or `tests/corpus/sets` (set files that must be refused) for every bug
//! found. A regression corpus (`tests/corpus/`, every file a case that once broke
//! something or would have) plus proptest over random, truncated and bit-flipped
//! input, bounded so the normal test run stays quick (`PROPTEST_CASES` raises it
//! for a longer hunt).

use modsynth_protocol::osc::{self, Request};
use modsynth_protocol::packet::{decode_packet, Due};
use modsynth_protocol::setfile;
use proptest::prelude::*;
use rosc::{encoder, OscBundle, OscMessage, OscPacket, OscType};
use std::path::Path;
use std::time::SystemTime;

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "corpus {} is missing", dir.display());
    files
}

/// Every accepted request passes the checks a hostile sender could aim at: no
/// control characters in names, finite values.
fn check_accepted(request: &Request) {
    let clean = |s: &str| assert!(!s.chars().any(char::is_control), "{s:?} accepted");
    match request {
        Request::Set { id, param, value } => {
            clean(id);
            clean(param);
            if let osc::Arg::Text(t) = value {
                clean(t);
            }
        }
        Request::Connect { src, dst } | Request::Disconnect { src, dst } => {
            clean(src);
            clean(dst);
        }
        Request::New { params, .. } => {
            assert!(params.iter().all(|(_, v)| v.is_finite()));
        }
        _ => {}
    }
}

fn decode_all(bytes: &[u8]) {
    if let Ok(items) = decode_packet(bytes, SystemTime::now()) {
        for item in items {
            if let Ok(r) = &item.request {
                check_accepted(r);
            }
            if let Due::In(d) = item.due {
                assert!(d <= modsynth_protocol::packet::SCHEDULE_HORIZON);
            }
        }
    }
}

#[test]
fn the_osc_corpus_is_refused_or_decoded_without_panic() {
    for (name, bytes) in corpus("osc") {
        let result = decode_packet(&bytes, SystemTime::now());
        // `ok-*` files are valid requests; everything else is refused, as a whole
        // packet or message by message.
        let accepted = result
            .as_ref()
            .map(|items| items.iter().any(|i| i.request.is_ok()))
            .unwrap_or(false);
        assert_eq!(
            accepted,
            name.starts_with("ok-"),
            "{name}: {:?}",
            format!("{result:?}").chars().take(300).collect::<String>()
        );
    }
}

#[test]
fn the_set_corpus_is_refused_with_a_line_and_without_panic() {
    for (name, bytes) in corpus("sets") {
        let text = String::from_utf8_lossy(&bytes);
        let e = setfile::parse(&name, &text).expect_err(&name);
        assert!(e.to_string().starts_with(&name), "{name}: {e}");
    }
}

fn arb_arg() -> impl Strategy<Value = OscType> {
    prop_oneof![
        any::<f32>().prop_map(OscType::Float),
        any::<i32>().prop_map(OscType::Int),
        any::<f64>().prop_map(OscType::Double),
        any::<i64>().prop_map(OscType::Long),
        "[a-z_0-9:\\-\n\t ]{0,12}".prop_map(OscType::String),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(OscType::Blob),
        Just(OscType::Nil),
        Just(OscType::Inf),
    ]
}

fn arb_message() -> impl Strategy<Value = OscPacket> {
    let addr = prop_oneof![
        Just("/module/new".to_string()),
        Just("/module/set".to_string()),
        Just("/module/get".to_string()),
        Just("/module/free".to_string()),
        Just("/patch/connect".to_string()),
        Just("/set/load".to_string()),
        Just("/set/save".to_string()),
        Just("/set/prepare".to_string()),
        Just("/set/switch".to_string()),
        Just("/status".to_string()),
        Just("/notify".to_string()),
        Just("/sync".to_string()),
        "/[a-z0-9]{1,4}/[a-z\n]{1,5}",
    ];
    let words = prop::sample::select(vec![
        "vco", "seq", "steps", "freq", "wave", "saw", "a", "a:out", "standby", "none",
    ]);
    let arg = prop_oneof![
        3 => words.prop_map(|w| OscType::String(w.to_string())),
        2 => arb_arg(),
    ];
    (addr, prop::collection::vec(arg, 0..8))
        .prop_map(|(addr, args)| OscPacket::Message(OscMessage { addr, args }))
}

fn arb_packet() -> impl Strategy<Value = OscPacket> {
    arb_message().prop_recursive(4, 16, 4, |inner| {
        (any::<u64>(), prop::collection::vec(inner, 0..4)).prop_map(|(t, content)| {
            OscPacket::Bundle(OscBundle {
                timetag: ((t >> 32) as u32, t as u32).into(),
                content,
            })
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_all(&bytes);
        let mut tagged = b"#bundle\0".to_vec();
        tagged.extend_from_slice(&bytes);
        decode_all(&tagged);
    }

    #[test]
    fn well_formed_packets_truncated_or_bit_flipped_never_panic(
        packet in arb_packet(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..4),
    ) {
        let Ok(bytes) = encoder::encode(&packet) else { return Ok(()) };
        decode_all(&bytes);
        if !bytes.is_empty() {
            decode_all(&bytes[..cut.index(bytes.len())]);
            let mut flipped = bytes.clone();
            for (at, bit) in flips {
                let i = at.index(flipped.len());
                flipped[i] ^= 1 << bit;
            }
            decode_all(&flipped);
        }
    }

    #[test]
    fn slip_streams_split_anywhere_decode_to_the_packets_sent_and_garbage_never_panics(
        packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 0..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        garbage in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        use modsynth_protocol::slip::{encode, Decoder};
        let wire: Vec<u8> = packets.iter().flat_map(|p| encode(p)).collect();
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        at.sort();
        let mut decoder = Decoder::new(64);
        let mut got = Vec::new();
        let mut start = 0;
        for end in at.into_iter().chain(std::iter::once(wire.len())) {
            decoder.push(&wire[start..end], |f| got.push(f.map(<[u8]>::to_vec)));
            start = end;
        }
        let want: Vec<_> = packets.iter().cloned().map(Ok).collect();
        prop_assert_eq!(got, want);
        let mut small = Decoder::new(8);
        small.push(&garbage, |f| {
            if let Ok(f) = f {
                assert!(f.len() <= 8);
            }
        });
    }

    #[test]
    fn set_files_from_fragments_never_panic(
        parts in prop::collection::vec(prop::sample::select(vec![
            "[[module]]\n", "[[connect]]\n", "[jack]\n", "id = \"a\"\n", "id = \"b\"\n",
            "type = \"vco\"\n", "type = \"seq\"\n", "params = { freq = 1e40 }\n",
            "params = { steps = nan, wave = 3 }\n", "params = { wave = \"saw\" }\n",
            "from = \"a:out\"\n", "to = \"b:in\"\n", "to = \"x\\ny:z\"\n", "rate = -1\n",
            "standby = \"none\"\n", "é", "\"", "=", "\n", "[", "{", "\0",
        ]), 0..24),
        cut in any::<prop::sample::Index>(),
    ) {
        let text: String = parts.concat();
        let _ = setfile::parse("f.toml", &text);
        let mut end = cut.index(text.len() + 1);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if let Ok(set) = setfile::parse("f.toml", &text[..end]) {
            // What parses saves to text that parses to the same set.
            let again = setfile::parse("again.toml", &set.to_toml()).unwrap();
            prop_assert_eq!(again, set);
        }
    }
}
