//! What a seed draws: a logrotate stanza ([`Scheme`]), a naming world
//! ([`Links`]) and a sequence of operations ([`Op`]), from the base or the
//! wider alphabet ([`Alphabet`]).

use super::*;

/// How rotated files are made, as in a logrotate stanza.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scheme {
    pub(super) copytruncate: bool,
    /// 0: none, 1: `compress`, 2: `compress` + `delaycompress`.
    pub(super) compress: u8,
    /// `compresscmd` (and its `compressext`): drawn after the operations,
    /// so a seed's stanza and operations stay what they were before
    /// compressors other than gzip were drawn.
    pub(super) codec: Codec,
    pub(super) dateext: bool,
    pub(super) olddir: bool,
    /// `access.log` instead of `access.log*`.
    pub(super) exact_glob: bool,
    pub(super) start_at_end: bool,
}

// logrotate's `compresscmd` (`Codec`): gzip (the default), xz, zstd or bzip2.

impl Codec {
    pub(super) fn draw(rng: &mut StdRng) -> Codec {
        match rng.random_range(0..4) {
            0 => Codec::Gzip,
            1 => Codec::Xz,
            2 => Codec::Zstd,
            _ => Codec::Bzip2,
        }
    }

    pub(super) fn compress(self, data: &[u8], out: File) -> Result<()> {
        match self {
            Codec::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
                enc.write_all(data)?;
                enc.finish()?.sync_all()?;
            }
            Codec::Xz => {
                let mut enc = liblzma::write::XzEncoder::new(out, 1);
                enc.write_all(data)?;
                enc.finish()?.sync_all()?;
            }
            Codec::Zstd => {
                let mut out = out;
                ruzstd::encoding::compress(
                    data,
                    &mut out,
                    ruzstd::encoding::CompressionLevel::Fastest,
                );
                out.sync_all()?;
            }
            Codec::Bzip2 => {
                let mut enc = bzip2::write::BzEncoder::new(out, bzip2::Compression::fast());
                enc.write_all(data)?;
                enc.finish()?.sync_all()?;
            }
        }
        Ok(())
    }

    pub(super) fn decompress(self, path: &Path) -> Result<Vec<u8>> {
        let file = File::open(path)?;
        let mut data = Vec::new();
        match self {
            Codec::Gzip => {
                MultiGzDecoder::new(file).read_to_end(&mut data)?;
            }
            Codec::Xz => {
                liblzma::read::XzDecoder::new_multi_decoder(file).read_to_end(&mut data)?;
            }
            Codec::Zstd => {
                ruzstd::decoding::StreamingDecoder::new(file)
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .read_to_end(&mut data)?;
            }
            Codec::Bzip2 => {
                bzip2::read::MultiBzDecoder::new(file).read_to_end(&mut data)?;
            }
        }
        Ok(data)
    }
}

/// How the file is named (the wider alphabet's worlds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Links {
    /// logrotate renames or copies the file (the base alphabet).
    None,
    /// `rotatelogs -L`: dated files, `access.log` a hard link to today's.
    Hard,
    /// cronolog `--symlink`: dated files beside a symbolic link.
    Beside,
    /// cronolog: `YYYY/MM/DD/access.log`, `access.log` a symbolic link.
    Dated,
}

/// A change of the configuration.
#[derive(Debug, Clone, Copy)]
pub(super) enum Change {
    /// `access.log` ↔ `access.log*`.
    Glob,
    /// `combined` ↔ the same LogFormat written out.
    Format,
    /// The flow removed (another flow stays).
    Remove,
    /// The flow added back.
    AddBack,
    /// The flow given a new name.
    Rename,
}

#[derive(Debug, Clone)]
pub(super) enum Op {
    Append(usize),
    Partial,
    Rotate {
        late: usize,
    },
    SlowRotate,
    DeleteOldest,
    DeleteLive,
    Kill,
    Start,
    Refuse,
    Stall,
    RefuseRecords,
    Heal,
    Sleep(u64),
    /// SIGHUP with a changed config, or the config changed while stopped.
    Reload(Change),
    /// `truncate -s N`: N at the start of the line at this permille of the
    /// file, plus `into` bytes (before the line's id).
    Truncate {
        at: u16,
        into: u8,
    },
    /// Kinesis refusing, and enough lines to block the reader.
    Flood,
    /// The state directory deleted (or moved away and made again empty).
    LoseState {
        replace: bool,
    },
}

/// The wider alphabet: a naming world and extra operations mixed into
/// `ops`, from their own random stream.
pub(super) fn widen(rng: &mut StdRng, ops: Vec<Op>) -> (Links, Vec<Op>) {
    let links = match rng.random_range(0..10) {
        0..=5 => Links::None,
        6 => Links::Hard,
        7 => Links::Beside,
        _ => Links::Dated,
    };
    let mut out = Vec::with_capacity(ops.len() * 2);
    for op in ops {
        if rng.random_bool(0.25) {
            out.push(match rng.random_range(0..100) {
                0..=44 => Op::Reload(match rng.random_range(0..100) {
                    0..=24 => Change::Glob,
                    25..=39 => Change::Format,
                    40..=64 => Change::Remove,
                    65..=79 => Change::AddBack,
                    _ => Change::Rename,
                }),
                45..=74 => Op::Truncate {
                    at: rng.random_range(0..1000),
                    into: rng.random_range(0..9),
                },
                75..=94 => Op::LoseState {
                    replace: rng.random_bool(0.5),
                },
                _ => Op::Flood,
            });
        }
        out.push(op);
    }
    (links, out)
}

pub(super) fn draw_scheme(rng: &mut StdRng) -> Scheme {
    Scheme {
        copytruncate: rng.random_bool(0.5),
        compress: rng.random_range(0..3),
        codec: Codec::Gzip,
        dateext: rng.random_bool(0.4),
        olddir: rng.random_bool(0.3),
        exact_glob: rng.random_bool(0.5),
        start_at_end: rng.random_bool(0.3),
    }
}

pub(super) fn draw_ops(rng: &mut StdRng, n: usize) -> Vec<Op> {
    let mut ops = Vec::with_capacity(n);
    let mut running = true;
    for _ in 0..n {
        let op = match rng.random_range(0..100) {
            0..=29 => Op::Append(rng.random_range(1..80)),
            30..=36 => Op::Partial,
            37..=48 => Op::Rotate {
                late: rng.random_range(0..4),
            },
            49..=51 => Op::SlowRotate,
            52..=55 => Op::DeleteOldest,
            56..=57 => Op::DeleteLive,
            58..=64 => {
                running = !running;
                if running {
                    Op::Start
                } else {
                    Op::Kill
                }
            }
            65..=69 => Op::Refuse,
            70..=72 => Op::Stall,
            73..=75 => Op::RefuseRecords,
            76..=83 => Op::Heal,
            _ => Op::Sleep(rng.random_range(100..2500)),
        };
        ops.push(op);
    }
    ops
}

/// Which operations a seed draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alphabet {
    /// The alphabet before issue #23: logrotate, crashes, outages.
    Base,
    /// With names, reloads, truncation, floods and a lost state directory.
    Wide,
}

/// A seed's logrotate stanza, naming world and operations.
pub(super) fn draw(seed: u64, n_ops: usize, alphabet: Alphabet) -> (Scheme, Links, Vec<Op>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut scheme = draw_scheme(&mut rng);
    let ops = draw_ops(&mut rng, n_ops);
    scheme.codec = Codec::draw(&mut rng);
    let (links, ops) = match alphabet {
        Alphabet::Base => (Links::None, ops),
        Alphabet::Wide => widen(&mut StdRng::seed_from_u64(seed ^ 0x2300_2300), ops),
    };
    (scheme, links, ops)
}
