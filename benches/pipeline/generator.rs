//! Deterministic Nakadi-style article events for the benchmark: nested objects,
//! arrays that are sometimes empty or null, per-key versions with repeated
//! updates and late (out-of-order) versions, CSV-hostile strings.
//!
//! Shape and mix follow the usual stock-change stream: `--dup-ratio` of the
//! events are later versions of an already-seen article (the compaction rate),
//! `--ooo-ratio` arrive after a higher version of their article.

use std::collections::HashMap;
use std::io::Write;

/// A small, fast, deterministic generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const BRANDS: [&str; 24] = [
    "Nike",
    "adidas",
    "Puma",
    "New Balance",
    "Levi's",
    "Tommy Hilfiger",
    "Esprit",
    "s.Oliver",
    "Jack & Jones",
    "Mango",
    "Even&Odd",
    "Marc O'Polo",
    "Tamaris",
    "Birkenstock",
    "Dr. Martens",
    "The North Face",
    "Fjällräven",
    "Björn Borg",
    "Scotch & Soda",
    "Abercrombie & Fitch",
    "Polo Ralph Lauren",
    "G-Star RAW",
    "Wrangler",
    "Vila",
];
const WORDS_A: [&str; 12] = [
    "Air",
    "Classic",
    "Urban",
    "Trail",
    "Court",
    "Retro",
    "Essential",
    "Core",
    "Flex",
    "Street",
    "Heritage",
    "Ultra",
];
const WORDS_B: [&str; 12] = [
    "Runner", "Sneaker", "Boot", "Hoodie", "T-Shirt", "Sweater", "Jacket", "Jeans", "Chino", "Cap",
    "Scarf", "Tote",
];
const SUFFIX: [&str; 20] = [
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    "",
    " 90",
    " 2.0",
    " Low",
    " High",
    ", Slim Fit",
    " \\\"Limited\\\"",
    " Größe+",
    " Édition",
    " 3/4",
    " (2-pack)",
];
const SIZES: [&str; 16] = [
    "36", "37", "38", "39", "40", "41", "42", "43", "44", "XS", "S", "M", "L", "XL", "W30/L32",
    "ONE SIZE",
];
const WAREHOUSES: [&str; 9] = [
    "BER", "LEJ", "ERF", "MGL", "BRN", "GRZ", "VEN", "OLS", "LDZ",
];
const TAGS: [&str; 10] = [
    "new-arrival",
    "sale",
    "bestseller",
    "sustainable",
    "limited",
    "online-exclusive",
    "premium",
    "basic",
    "trending",
    "back-in-stock",
];
const COLORS: [&str; 8] = [
    "black", "white", "navy", "grey", "beige", "red", "olive", "brown",
];
const FIBERS: [&str; 6] = [
    "cotton",
    "polyester",
    "elastane",
    "viscose",
    "wool",
    "linen",
];

struct Article {
    id: u64,
    brand: &'static str,
    model: String,
    sizes: Vec<(&'static str, Vec<&'static str>)>,
    qty: Vec<i64>,
    price_cents: i64,
    version: i64,
    occurred_ms: i64,
    tags: Vec<&'static str>,
    attributes: String,
    /// Highest version an event delivered so far.
    delivered: Option<i64>,
}

/// Counts of what was generated.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub events: u64,
    pub bytes: u64,
    pub articles: u64,
    pub out_of_order: u64,
    pub size_rows: u64,
    /// Late events that no earlier event of their article outranks: only a
    /// key state holding the prior articles (see [`History::after`]) tells
    /// them late.
    pub late_behind_state: u64,
}

/// Per article, the version a key state holds (see
/// [`Generator::state_versions`]).
pub struct StateVersions {
    articles: u64,
    /// Versions of the articles events named; the others are prior ones.
    named: HashMap<u64, i64>,
}

impl StateVersions {
    /// Articles in the state: those numbered 0..articles.
    pub fn articles(&self) -> u64 {
        self.articles
    }

    pub fn version(&self, n: u64) -> i64 {
        self.named
            .get(&n)
            .copied()
            .unwrap_or_else(|| prior_version(n))
    }
}

/// Time of the first event.
const START_MS: i64 = 1_717_401_600_000;
const DAY_MS: i64 = 86_400_000;

/// The id of the `n`-th article (from 0): ids spread over 100M..1B.
pub fn article_id(n: u64) -> u64 {
    100_000_000 + n * 7919 % 900_000_000
}

/// The number of the article with `id`, the inverse of [`article_id`]
/// (for ids of the first 900M articles).
pub fn article_number(id: u64) -> u64 {
    // 7919 * INVERSE = 1 (mod 900M).
    const INVERSE: u64 = 140_017_679;
    (id - 100_000_000) * INVERSE % 900_000_000
}

/// The version of a prior article ([`Generator::after`]) before any event:
/// 1 to 4, from its number.
pub fn prior_version(n: u64) -> i64 {
    1 + (Rng::new(n).next_u64() % 4) as i64
}

pub struct Generator {
    rng: Rng,
    /// Articles numbered from `prior` on, as they were generated.
    articles: Vec<Article>,
    /// Articles numbered below this one exist before the first event: no
    /// event introduced them (a key state written for them stands in for
    /// their history). Each gets its looks when an event first names it.
    prior: usize,
    /// The prior articles that events named.
    prior_articles: HashMap<usize, Article>,
    holes: Vec<(usize, i64, i64)>,
    now_ms: i64,
    remaining_new: u64,
    remaining_update: u64,
    remaining_late: u64,
    hole_rate: f64,
    /// Articles whose looks are kept; older ones keep only id and version.
    window: usize,
    /// Articles before this index have been slimmed.
    slimmed: usize,
    pub stats: Stats,
}

fn rfc3339_ms(ms: i64) -> String {
    let dt = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl Generator {
    pub fn new(seed: u64, events: u64, dup_ratio: f64, ooo_ratio: f64) -> Generator {
        let new = ((events as f64) * (1.0 - dup_ratio)).round().max(1.0) as u64;
        let late = ((events as f64) * ooo_ratio).round() as u64;
        let late = late.min(events.saturating_sub(new));
        let update = events - new - late;
        Generator {
            rng: Rng::new(seed),
            articles: Vec::new(),
            prior: 0,
            prior_articles: HashMap::new(),
            holes: Vec::new(),
            now_ms: START_MS,
            remaining_new: new,
            remaining_update: update,
            remaining_late: late,
            hole_rate: if update > 0 {
                1.15 * late as f64 / update as f64
            } else {
                0.0
            },
            window: usize::MAX,
            slimmed: 0,
            stats: Stats::default(),
        }
    }

    /// Keeps the looks (model, sizes, attributes...) of the newest `window`
    /// articles only: an older one keeps its id and version and gets new looks
    /// when it comes up again. Bounds the generator's memory over a long
    /// history; events of a dataset smaller than the window do not change.
    pub fn keeping_looks_of(mut self, window: usize) -> Generator {
        self.window = window.max(1);
        self
    }

    /// Goes on after `prior` articles (numbers 0..prior, ids [`article_id`],
    /// versions [`prior_version`]), of which `holes` have a version that
    /// was never delivered (one below theirs) and may come late, as the
    /// late versions an earlier run left pending.
    pub fn after(mut self, prior: u64, holes: u64) -> Generator {
        self.prior = prior as usize;
        self.stats.articles = prior;
        let holes = holes.min(prior / 2);
        let stride = prior.checked_div(holes).unwrap_or(0);
        for k in 0..holes {
            // One hole per article: the first of a version above 1 from a
            // random point of the hole's own stretch of articles.
            let mut n = k * stride + self.rng.below(stride);
            while prior_version(n) == 1 && n + 1 < (k + 1) * stride {
                n += 1;
            }
            if prior_version(n) > 1 {
                self.holes
                    .push((n as usize, prior_version(n) - 1, START_MS - 2 * DAY_MS));
            }
        }
        self
    }

    /// Per article, the version a key state committed after the events so
    /// far holds: prior articles no event named at [`prior_version`].
    pub fn state_versions(&self) -> StateVersions {
        let mut named: HashMap<u64, i64> = self
            .prior_articles
            .iter()
            .map(|(n, a)| (*n as u64, a.version))
            .collect();
        for (i, article) in self.articles.iter().enumerate() {
            named.insert((self.prior + i) as u64, article.version);
        }
        StateVersions {
            articles: self.stats.articles,
            named,
        }
    }

    /// The article numbered `a` (a prior one appears, without looks, when
    /// first named).
    fn article_mut(&mut self, a: usize) -> &mut Article {
        if a < self.prior {
            self.prior_articles.entry(a).or_insert_with(|| Article {
                id: article_id(a as u64),
                brand: BRANDS[0],
                model: String::new(),
                sizes: Vec::new(),
                qty: Vec::new(),
                price_cents: 0,
                version: prior_version(a as u64),
                occurred_ms: START_MS - DAY_MS,
                tags: Vec::new(),
                attributes: String::new(),
                delivered: None,
            })
        } else {
            &mut self.articles[a - self.prior]
        }
    }

    /// An article already named (see [`Generator::article_mut`]).
    fn article(&self, a: usize) -> &Article {
        if a < self.prior {
            &self.prior_articles[&a]
        } else {
            &self.articles[a - self.prior]
        }
    }

    fn slim_old_articles(&mut self) {
        while self.articles.len() - self.slimmed > self.window {
            let article = &mut self.articles[self.slimmed];
            article.model = String::new();
            article.attributes = String::new();
            article.sizes = Vec::new();
            article.qty = Vec::new();
            article.tags = Vec::new();
            self.slimmed += 1;
        }
    }

    fn restore_looks(&mut self, a: usize) {
        let id = self.article_mut(a).id;
        if !self.article(a).attributes.is_empty() {
            return;
        }
        let fresh = self.random_article(id);
        let article = self.article_mut(a);
        article.brand = fresh.brand;
        article.model = fresh.model;
        article.sizes = fresh.sizes;
        article.qty = fresh.qty;
        article.price_cents = fresh.price_cents;
        article.tags = fresh.tags;
        article.attributes = fresh.attributes;
    }

    fn new_article(&mut self) -> Article {
        let id = article_id(self.stats.articles);
        self.stats.articles += 1;
        self.random_article(id)
    }

    fn random_article(&mut self, id: u64) -> Article {
        let r = &mut self.rng;
        let count = 1 + r.below(6) as usize;
        let start = r.below((SIZES.len() - count) as u64) as usize;
        let sizes: Vec<(&'static str, Vec<&'static str>)> = SIZES[start..start + count]
            .iter()
            .map(|s| {
                let n = 1 + r.below(3) as usize;
                let from = r.below((WAREHOUSES.len() - n) as u64) as usize;
                (*s, WAREHOUSES[from..from + n].to_vec())
            })
            .collect();
        let qty = sizes.iter().map(|_| r.below(26) as i64).collect();
        let tags = (0..r.below(4)).map(|_| *r.pick(&TAGS)).collect();
        let attributes = format!(
            r#"{{"color":{{"primary":"{}","secondary":{}}},"season":"SS{}","material":{{"composition":[{{"fiber":"{}","pct":{}}}]}},"care":{{"machine_wash":{},"max_temp_c":{}}},"logistics":{{"weight_g":{},"country_of_origin":"PT"}}}}"#,
            r.pick(&COLORS),
            if r.chance(0.4) {
                format!("\"{}\"", r.pick(&COLORS))
            } else {
                "null".into()
            },
            20 + r.below(6),
            r.pick(&FIBERS),
            60 + r.below(41),
            r.chance(0.85),
            [30, 40, 60][r.below(3) as usize],
            80 + r.below(2400)
        );
        Article {
            id,
            brand: BRANDS[r.below(BRANDS.len() as u64) as usize],
            model: format!(
                "{} {}{}",
                r.pick(&WORDS_A),
                r.pick(&WORDS_B),
                r.pick(&SUFFIX)
            ),
            sizes,
            qty,
            price_cents: [1995, 2995, 4995, 7995, 9995, 14995][r.below(6) as usize],
            version: 1,
            occurred_ms: self.now_ms - 1 - r.below(60_000) as i64,
            tags,
            attributes,
            delivered: None,
        }
    }

    fn pick_existing(&mut self) -> usize {
        let n = (self.prior + self.articles.len()) as u64;
        let x = self.rng.below(10);
        if x < 2 {
            self.rng.below(n.min(1000)) as usize
        } else if x < 5 {
            (n - 1 - self.rng.below(n.min(2000))) as usize
        } else {
            self.rng.below(n) as usize
        }
    }

    fn render(&mut self, a: usize, version: i64, occurred_ms: i64, out: &mut Vec<u8>) {
        self.restore_looks(a);
        let sizes_kind = self.rng.below(100);
        let eid = (self.rng.next_u64() as u128) << 64 | self.rng.next_u64() as u128;
        let flow = self.rng.next_u64();
        if sizes_kind >= 10 {
            self.stats.size_rows += self.article(a).sizes.len() as u64;
        }
        let article = self.article(a);
        let sizes = if sizes_kind < 2 {
            "null".to_string()
        } else if sizes_kind < 10 {
            "[]".to_string()
        } else {
            let parts: Vec<String> = article
                .sizes
                .iter()
                .zip(&article.qty)
                .map(|((s, w), q)| {
                    format!(
                        r#"{{"size":"{s}","qty":{q},"warehouses":[{}]}}"#,
                        w.iter()
                            .map(|x| format!("\"{x}\""))
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                })
                .collect();
            format!("[{}]", parts.join(","))
        };
        let available: i64 = if sizes_kind < 10 {
            0
        } else {
            article.qty.iter().sum()
        };
        let tags = article
            .tags
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(",");
        let hex = format!("{eid:032x}");
        let _ = write!(
            out,
            r#"{{"metadata":{{"eid":"{}-{}-4{}-a{}-{}","occurred_at":"{}","received_at":"{}","event_type":"article.stock-changed","partition":"{}","version":"1.2.0","flow_id":"f{flow:016x}"}},"article_id":{},"brand":"{}","model":"{}","version":{version},"available_qty":{available},"price":{{"amount":{}.{:02},"currency":"EUR"}},"sizes":{sizes},"tags":[{tags}],"attributes":{}}}"#,
            &hex[0..8],
            &hex[8..12],
            &hex[13..16],
            &hex[17..20],
            &hex[20..32],
            rfc3339_ms(occurred_ms),
            rfc3339_ms(self.now_ms),
            article.id % 8,
            article.id,
            article.brand,
            article.model,
            article.price_cents / 100,
            article.price_cents % 100,
            article.attributes,
        );
    }

    /// Counts an event against its kind's quota, or against whichever kind
    /// still has one (the first events cannot be late, say).
    fn charge(&mut self, kind: u8) {
        let slots = [
            &mut self.remaining_new,
            &mut self.remaining_update,
            &mut self.remaining_late,
        ];
        let [new, update, late] = slots;
        let wanted: &mut u64 = match kind {
            0 => new,
            1 => update,
            _ => late,
        };
        if *wanted > 0 {
            *wanted -= 1;
            return;
        }
        for remaining in [
            &mut self.remaining_update,
            &mut self.remaining_late,
            &mut self.remaining_new,
        ] {
            if *remaining > 0 {
                *remaining -= 1;
                return;
            }
        }
    }

    /// The next event: its partition and JSON, or `None` when all are out.
    pub fn next_event(&mut self, out: &mut Vec<u8>) -> Option<u32> {
        let total = self.remaining_new + self.remaining_update + self.remaining_late;
        if total == 0 {
            return None;
        }
        self.now_ms += 1 + self.rng.below(18) as i64;
        let x = self.rng.below(total);
        let mut kind = if x < self.remaining_new {
            0
        } else if x < self.remaining_new + self.remaining_update {
            1
        } else {
            2
        };
        if self.prior + self.articles.len() == 0 {
            kind = 0;
        } else if kind == 2 && self.holes.is_empty() {
            kind = 1;
        }
        self.charge(kind);
        let (a, version, occurred) = match kind {
            0 => {
                let article = self.new_article();
                let (v, o) = (article.version, article.occurred_ms);
                self.articles.push(article);
                self.slim_old_articles();
                (self.prior + self.articles.len() - 1, v, o)
            }
            1 => {
                let a = self.pick_existing();
                for i in 0..self.article_mut(a).qty.len() {
                    if self.rng.chance(0.5) {
                        let change = self.rng.below(8) as i64 - 4;
                        let q = &mut self.article_mut(a).qty[i];
                        *q = (*q + change).max(0);
                    }
                }
                let occurred = (self.article(a).occurred_ms + 1)
                    .max(self.now_ms - 1 - self.rng.below(60_000) as i64);
                let mut gaps = self.hole_rate as i64;
                if self.rng.chance(self.hole_rate - gaps as f64) {
                    gaps += 1;
                }
                let (base_version, base_occurred) = {
                    let base = self.article(a);
                    (base.version, base.occurred_ms)
                };
                for g in 1..=gaps {
                    let hole_occurred = base_occurred + (occurred - base_occurred) * g / (gaps + 1);
                    self.holes.push((a, base_version + g, hole_occurred));
                }
                let article = self.article_mut(a);
                article.version += 1 + gaps;
                article.occurred_ms = occurred;
                (a, article.version, occurred)
            }
            _ => {
                self.stats.out_of_order += 1;
                let i = self.rng.below(self.holes.len() as u64) as usize;
                let last = self.holes.len() - 1;
                self.holes.swap(i, last);
                self.holes.pop().unwrap_or((0, 1, self.now_ms))
            }
        };
        let article = self.article_mut(a);
        let outranked = article.delivered.is_some_and(|d| d > version);
        article.delivered = Some(article.delivered.map_or(version, |d| d.max(version)));
        if kind == 2 && !outranked {
            self.stats.late_behind_state += 1;
        }
        let start = out.len();
        self.render(a, version, occurred, out);
        self.stats.events += 1;
        self.stats.bytes += (out.len() - start) as u64 + 1;
        Some((self.article(a).id % 8) as u32)
    }
}

/// Nakadi stream lines of 8 partitions: events wait per partition until a
/// batch is full; offsets go on from one file to the next.
pub struct StreamLines {
    pending: Vec<Vec<Vec<u8>>>,
    offsets: [u64; 8],
    batch: usize,
}

impl StreamLines {
    pub fn new(batch: usize) -> StreamLines {
        StreamLines {
            pending: vec![Vec::new(); 8],
            offsets: [0; 8],
            batch,
        }
    }

    /// Adds an event of `partition`, writing its batch to `out` once full.
    pub fn push(
        &mut self,
        partition: u32,
        event: &[u8],
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        let p = partition as usize;
        self.pending[p].push(event.to_vec());
        if self.pending[p].len() >= self.batch {
            self.flush_partition(p, out)?;
        }
        Ok(())
    }

    /// Writes every partition's pending events as a last, shorter batch.
    pub fn finish(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        for p in 0..self.pending.len() {
            self.flush_partition(p, out)?;
        }
        Ok(())
    }

    fn flush_partition(&mut self, partition: usize, out: &mut dyn Write) -> std::io::Result<()> {
        let events = &mut self.pending[partition];
        if events.is_empty() {
            return Ok(());
        }
        self.offsets[partition] += events.len() as u64;
        write!(
            out,
            r#"{{"cursor":{{"partition":"{partition}","offset":"001-0001-{:018}"}},"events":["#,
            self.offsets[partition] - 1
        )?;
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(e)?;
        }
        out.write_all(b"]}\n")?;
        events.clear();
        Ok(())
    }
}

/// Writes `events` events as NDJSON (for DuckDB) and as Nakadi stream lines
/// (batches of `batch` events per partition, for materializer); with
/// `random_partitions` each event goes to any partition, as Nakadi's
/// default strategy publishes, instead of its article's.
pub fn write_files(
    events: u64,
    seed: u64,
    ndjson: &std::path::Path,
    stream: &std::path::Path,
    batch: usize,
    random_partitions: bool,
) -> std::io::Result<Stats> {
    // A generator of its own: the events are the same either way.
    let mut placement = Rng::new(seed.wrapping_add(1));
    let mut generator = Generator::new(seed, events, 0.7, 0.05);
    let mut plain = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(ndjson)?);
    let mut lines = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(stream)?);
    let mut stream_lines = StreamLines::new(batch);
    let mut event = Vec::with_capacity(2048);
    loop {
        event.clear();
        let Some(partition) = generator.next_event(&mut event) else {
            break;
        };
        let partition = if random_partitions {
            placement.below(8) as u32
        } else {
            partition
        };
        plain.write_all(&event)?;
        plain.write_all(b"\n")?;
        stream_lines.push(partition, &event, &mut lines)?;
    }
    stream_lines.finish(&mut lines)?;
    plain.flush()?;
    lines.flush()?;
    Ok(generator.stats.clone())
}

/// A topic's history, one recording per run: each holds the next `events`
/// events as stream lines, offsets going on from the run before.
pub struct History {
    generator: Generator,
    lines: StreamLines,
}

impl History {
    /// `runs` recordings of `events` events: `new_ratio` of them articles never
    /// seen before, `late_ratio` late.
    pub fn new(seed: u64, runs: u64, events: u64, new_ratio: f64, late_ratio: f64) -> History {
        History {
            // Looks of the articles of the last two runs are kept.
            generator: Generator::new(seed, runs * events, 1.0 - new_ratio, late_ratio)
                .keeping_looks_of((2 * events) as usize),
            lines: StreamLines::new(500),
        }
    }

    /// A history that goes on after `prior` articles whose events are not
    /// generated (see [`Generator::after`]), for recordings of `events`
    /// events in all, runs of up to `run_events`. The late versions pending
    /// are those a history of `prior` articles leaves: an update leaves 1.15
    /// holes per late event to come (see [`Generator::new`]), so 0.15 of all
    /// late events so far are still to come.
    pub fn after(
        seed: u64,
        prior: u64,
        events: u64,
        run_events: u64,
        new_ratio: f64,
        late_ratio: f64,
    ) -> History {
        let events_before = prior as f64 / new_ratio;
        let pending = (0.15 * late_ratio * events_before).round() as u64;
        History {
            generator: Generator::new(seed, events, 1.0 - new_ratio, late_ratio)
                .keeping_looks_of((2 * run_events) as usize)
                .after(prior, pending),
            lines: StreamLines::new(500),
        }
    }

    /// The versions a key state holds after the recordings written so far.
    pub fn state_versions(&self) -> StateVersions {
        self.generator.state_versions()
    }

    /// Writes the next `events` events to `path`; returns what was generated
    /// so far.
    pub fn write_run(&mut self, events: u64, path: &std::path::Path) -> std::io::Result<Stats> {
        let mut out = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(path)?);
        let mut event = Vec::with_capacity(2048);
        for _ in 0..events {
            event.clear();
            let Some(partition) = self.generator.next_event(&mut event) else {
                break;
            };
            self.lines.push(partition, &event, &mut out)?;
        }
        self.lines.finish(&mut out)?;
        out.flush()?;
        Ok(self.generator.stats.clone())
    }
}
