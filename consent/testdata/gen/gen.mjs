// Generates consent-string fixtures for Tagway's Go decoders using the IAB's
// own JavaScript encoders:
//   - @iabtcf/core  (TCF v2 TC strings)      -> ../fixtures/tcf.json
//   - @iabgpp/cmpapi (GPP strings, GppModel)  -> ../fixtures/gpp.json
//
// Every "expect" object is built from a ROUND TRIP: the string is decoded
// again with the same library that encoded it and the expectation is what
// that decoder reports (not what was fed to the encoder). This matters because
// both encoders silently drop / rewrite some inputs (see ../fixtures/README.md).
//
// Output is deterministic: all timestamps are fixed, nothing depends on "now".
//
// Usage: cd consent/testdata/gen && npm ci && node gen.mjs

import { writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import {
  GVL,
  TCModel,
  TCString,
  PurposeRestriction,
  RestrictionType,
  Segment,
} from "@iabtcf/core";
import { GppModel, RangeEntry } from "@iabgpp/cmpapi";

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, "..", "fixtures");

// ---------------------------------------------------------------------------
// generic helpers
// ---------------------------------------------------------------------------

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const sortNum = (a) => [...a].sort((x, y) => x - y);
const secs = (d) => Math.floor(d.getTime() / 1000);
// bool array (index 0 = id 1) -> sorted id list
const boolsToIds = (arr) => arr.flatMap((b, i) => (b ? [i + 1] : []));
// id list -> bool array of a given length
const idsToBools = (ids, n) => range(1, n).map((i) => ids.includes(i));
const snake = (s) => s.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();

function assert(cond, msg) {
  if (!cond) throw new Error("assertion failed: " + msg);
}

// ---------------------------------------------------------------------------
// TCF (@iabtcf/core)
// ---------------------------------------------------------------------------

// A synthetic Global Vendor List. @iabtcf/core needs a GVL to encode (it
// takes vendorListVersion, tcfPolicyVersion and the consent language from it
// and filters vendor signals against it). We build one in memory: nothing is
// fetched.
const named = (ids, prefix) =>
  Object.fromEntries(ids.map((id) => [id, { id, name: `${prefix} ${id}`, description: "" }]));

function vendorDecl(id, over = {}) {
  return {
    id,
    name: `Vendor ${id}`,
    // consent purposes / legitimate-interest purposes / flexible purposes
    purposes: [1, 3, 4, 5, 6, 11],
    legIntPurposes: [2, 7, 8, 9, 10],
    flexiblePurposes: [2, 3, 4, 7, 8, 9, 10],
    specialPurposes: [1, 2],
    features: [1, 2, 3],
    specialFeatures: [1, 2],
    policyUrl: "https://example.invalid/privacy",
    cookieMaxAgeSeconds: 86400,
    usesCookies: true,
    cookieRefresh: false,
    usesNonCookieAccess: false,
    ...over,
  };
}

function makeGVL({ vendorIds, vendorListVersion = 150, tcfPolicyVersion = 4, declare = {} }) {
  const vendors = {};
  for (const id of vendorIds) vendors[id] = vendorDecl(id, declare[id] || {});
  return new GVL({
    gvlSpecificationVersion: 3,
    vendorListVersion,
    tcfPolicyVersion,
    lastUpdated: "2024-01-01T00:00:00Z",
    purposes: named(range(1, 11), "Purpose"),
    specialPurposes: named(range(1, 3), "Special purpose"),
    features: named(range(1, 3), "Feature"),
    specialFeatures: named(range(1, 2), "Special feature"),
    stacks: {},
    vendors,
  });
}

// GVL.changeLanguage() would fetch a translation file; pre-seeding the
// library's own static language cache lets us switch language offline.
async function setLanguage(gvl, lang) {
  const up = lang.toUpperCase();
  if (!GVL.LANGUAGE_CACHE.has(up)) {
    GVL.LANGUAGE_CACHE.set(up, {
      purposes: gvl.purposes,
      specialPurposes: gvl.specialPurposes,
      features: gvl.features,
      specialFeatures: gvl.specialFeatures,
      stacks: gvl.stacks,
    });
  }
  await gvl.changeLanguage(lang);
}

const vecIds = (v) => {
  const out = [];
  v.forEach((has, id) => {
    if (has) out.push(id);
  });
  return out;
};

// Expectation from a decoded TCModel (decoded with TCString.decode).
function tcfExpect(m, present) {
  const e = {
    version: m.version,
    cmp_id: m.cmpId,
    cmp_version: m.cmpVersion,
    consent_screen: m.consentScreen,
    consent_language: m.consentLanguage,
    vendor_list_version: m.vendorListVersion,
    policy_version: m.policyVersion,
    is_service_specific: m.isServiceSpecific,
    use_non_standard_stacks: m.useNonStandardStacks,
    purpose_one_treatment: m.purposeOneTreatment,
    publisher_cc: m.publisherCountryCode,
    created: secs(m.created),
    last_updated: secs(m.lastUpdated),
    purposes_consent: vecIds(m.purposeConsents),
    purposes_li: vecIds(m.purposeLegitimateInterests),
    special_features: vecIds(m.specialFeatureOptins),
    vendor_consent: vecIds(m.vendorConsents),
    vendor_li: vecIds(m.vendorLegitimateInterests),
  };
  const pr = m.publisherRestrictions
    .getRestrictions()
    .map((r) => ({
      purpose: r.purposeId,
      type: r.restrictionType,
      vendors: sortNum(m.publisherRestrictions.getVendors(r)),
    }))
    .sort((a, b) => a.purpose - b.purpose || a.type - b.type);
  if (pr.length) e.publisher_restrictions = pr;
  if (present.has(Segment.VENDORS_DISCLOSED)) e.vendors_disclosed = vecIds(m.vendorsDisclosed);
  if (present.has(Segment.VENDORS_ALLOWED)) e.vendors_allowed = vecIds(m.vendorsAllowed);
  if (present.has(Segment.PUBLISHER_TC)) {
    e.publisher_tc = {
      consents: vecIds(m.publisherConsents),
      legitimate_interests: vecIds(m.publisherLegitimateInterests),
      num_custom_purposes: m.numCustomPurposes,
      custom_consents: vecIds(m.publisherCustomConsents),
      custom_legitimate_interests: vecIds(m.publisherCustomLegitimateInterests),
    };
  }
  return e;
}

const SEG_BY_FIRST_CHAR = (c) => {
  // first 3 bits of a segment = segment type (core segment: version=2 -> 000)
  const n = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".indexOf(c);
  return [Segment.CORE, Segment.VENDORS_DISCLOSED, Segment.VENDORS_ALLOWED, Segment.PUBLISHER_TC][n >> 3];
};

const tcfFixtures = [];
async function tcf(name, { gvl, lang, setup, options, note }) {
  if (lang) await setLanguage(gvl, lang);
  const m = new TCModel(gvl);
  m.cmpId = 10;
  m.cmpVersion = 3;
  m.consentScreen = 1;
  // fixed, day-aligned default (what TCF 2.2 CMPs emit); scenarios override
  m.created = new Date("2024-05-01T00:00:00Z");
  m.lastUpdated = new Date("2024-05-01T00:00:00Z");
  setup(m);
  const str = TCString.encode(m, options);
  const dec = TCString.decode(str);
  const present = new Set(str.split(".").map((s) => SEG_BY_FIRST_CHAR(s[0])));
  const fx = { name, string: str, expect: tcfExpect(dec, present) };
  if (note) fx.note = note;
  tcfFixtures.push(fx);
  return fx;
}

// GVLs -------------------------------------------------------------------
const gvlMain = makeGVL({ vendorIds: range(1, 1200), vendorListVersion: 150, tcfPolicyVersion: 4 });
const gvlHigh = makeGVL({
  vendorIds: [...range(1, 20), 755, 32767, 32768, 40000, 65535],
  vendorListVersion: 151,
  tcfPolicyVersion: 4,
});
const gvlV2 = makeGVL({ vendorIds: range(1, 60), vendorListVersion: 48, tcfPolicyVersion: 2 });
const gvlV5 = makeGVL({ vendorIds: range(1, 60), vendorListVersion: 210, tcfPolicyVersion: 5 });
// vendors 150..159 deliberately missing from this GVL (restriction-range quirk)
const gvlGap = makeGVL({
  vendorIds: [...range(1, 149), ...range(160, 300)],
  vendorListVersion: 152,
  tcfPolicyVersion: 4,
});
const gvlSmall = makeGVL({ vendorIds: [1, 2, 3, 8, 9, 10, 700], vendorListVersion: 153, tcfPolicyVersion: 4 });
// vendor 6 declares no LI purposes and no flexible purposes: its LI signal is dropped
const gvlFilter = makeGVL({
  vendorIds: range(1, 12),
  vendorListVersion: 154,
  tcfPolicyVersion: 4,
  declare: {
    6: { purposes: [1], legIntPurposes: [], flexiblePurposes: [] },
    7: { purposes: [], legIntPurposes: [2], flexiblePurposes: [] },
  },
});

const CORE_ONLY = { segments: [Segment.CORE] };

await tcf("tcf_all_purposes_many_vendors", {
  gvl: gvlMain,
  options: CORE_ONLY,
  note: "vendor_consent 1..1200 (encoder picks RANGE: one entry); vendor_li every odd id (encoder picks BITFIELD)",
  setup(m) {
    m.purposeConsents.set(range(1, 11));
    m.purposeLegitimateInterests.set([2, 7, 8, 9, 10]);
    m.specialFeatureOptins.set([1, 2]);
    m.vendorConsents.set(range(1, 1200));
    m.vendorLegitimateInterests.set(range(1, 1200).filter((i) => i % 2 === 1));
  },
});

await tcf("tcf_consent_bitfield_li_range", {
  gvl: gvlMain,
  options: CORE_ONLY,
  note: "vendor_consent = ids not divisible by 3 (BITFIELD); vendor_li = 3 blocks (RANGE)",
  setup(m) {
    m.purposeConsents.set([1, 2, 3, 4]);
    m.purposeLegitimateInterests.set([2, 7]);
    m.vendorConsents.set(range(1, 1199).filter((i) => i % 3 !== 0));
    m.vendorLegitimateInterests.set([...range(1, 100), ...range(500, 600), ...range(1100, 1200)]);
  },
});

await tcf("tcf_range_with_singles", {
  gvl: gvlMain,
  options: CORE_ONLY,
  note: "range encoding mixing single ids and id ranges",
  setup(m) {
    m.purposeConsents.set([1]);
    m.vendorConsents.set([5, 77, ...range(300, 310), 999, ...range(1150, 1152)]);
    m.vendorLegitimateInterests.set([12]);
  },
});

await tcf("tcf_no_consent", {
  gvl: gvlMain,
  options: CORE_ONLY,
  note: "nothing consented: all vectors empty (maxId 0, bitfield encoding of 0 bits)",
  setup() {},
});

await tcf("tcf_partial_purposes", {
  gvl: gvlMain,
  options: CORE_ONLY,
  setup(m) {
    m.purposeConsents.set([1, 3, 4, 7, 10]);
    m.purposeLegitimateInterests.set([2, 8]);
    m.vendorConsents.set([2, 6, 8, 10, 755]);
    m.vendorLegitimateInterests.set([2, 6]);
  },
});

await tcf("tcf_legitimate_interests_only", {
  gvl: gvlMain,
  options: CORE_ONLY,
  note: "purpose 1 LI was requested but @iabtcf/core always clears purpose-1 LI before encoding",
  setup(m) {
    m.purposeLegitimateInterests.set([1, 2, 7, 8, 9, 10]);
    m.vendorLegitimateInterests.set([1, 2, 3, 50, 51, 52, 1000]);
  },
});

await tcf("tcf_special_features_fr_de", {
  gvl: makeGVL({ vendorIds: range(1, 40), vendorListVersion: 155, tcfPolicyVersion: 4 }),
  lang: "fr",
  options: CORE_ONLY,
  note: "consent language FR (from GVL language), publisher CC DE, purpose one treatment, both special features",
  setup(m) {
    m.cmpId = 300;
    m.cmpVersion = 4095; // max 12-bit
    m.consentScreen = 63; // max 6-bit
    m.publisherCountryCode = "de";
    m.purposeOneTreatment = true;
    m.useNonStandardStacks = true;
    m.specialFeatureOptins.set([1, 2]);
    m.purposeConsents.set([2, 3, 4]);
    m.vendorConsents.set([1, 40]);
  },
});

await tcf("tcf_policy_v2", {
  gvl: gvlV2,
  options: CORE_ONLY,
  note: "TCF 2.0/2.1 era: policy version 2",
  setup(m) {
    m.created = new Date("2021-03-04T05:06:07Z");
    m.lastUpdated = new Date("2021-08-09T10:11:12Z");
    m.purposeConsents.set(range(1, 10));
    m.purposeLegitimateInterests.set([2, 7, 9, 10]);
    m.vendorConsents.set(range(1, 60));
    m.vendorLegitimateInterests.set(range(1, 30));
  },
});

await tcf("tcf_policy_v4", {
  gvl: gvlMain,
  options: CORE_ONLY,
  note: "TCF 2.2: policy version 4, day-aligned dates",
  setup(m) {
    m.created = new Date("2023-11-20T00:00:00Z");
    m.lastUpdated = new Date("2024-02-29T00:00:00Z");
    m.purposeConsents.set(range(1, 11));
    m.vendorConsents.set([1, 2, 3]);
  },
});

await tcf("tcf_policy_v5", {
  gvl: gvlV5,
  options: CORE_ONLY,
  note: "policy version 5 (GVL tcfPolicyVersion 5)",
  setup(m) {
    m.purposeConsents.set([1, 2]);
    m.vendorConsents.set([60]);
  },
});

await tcf("tcf_service_specific_true", {
  gvl: gvlMain,
  options: CORE_ONLY,
  setup(m) {
    m.isServiceSpecific = true;
    m.purposeConsents.set([1, 2, 3]);
    m.vendorConsents.set([10, 20, 30]);
    m.vendorLegitimateInterests.set([10]);
  },
});

await tcf("tcf_service_specific_false", {
  gvl: gvlMain,
  options: CORE_ONLY,
  setup(m) {
    m.isServiceSpecific = false;
    m.purposeConsents.set([1, 2, 3]);
    m.vendorConsents.set([10, 20, 30]);
    m.vendorLegitimateInterests.set([10]);
  },
});

await tcf("tcf_high_vendor_ids", {
  gvl: gvlHigh,
  options: CORE_ONLY,
  note: "vendor ids above 32767 up to 65535 (16-bit max)",
  setup(m) {
    m.purposeConsents.set([1, 2]);
    m.vendorConsents.set([3, 32768, 40000, 65535]);
    m.vendorLegitimateInterests.set([32767]);
  },
});

await tcf("tcf_publisher_restrictions", {
  gvl: makeGVL({
    // 32769 and 39999 are in the GVL so that [32767,32768] and [40000] are NOT
    // merged into one range (see tcf_pubrestr_range_spans_gvl_gap)
    vendorIds: [...range(1, 1200), 32767, 32768, 32769, 39999, 40000, 65534, 65535],
    vendorListVersion: 156,
    tcfPolicyVersion: 4,
  }),
  note: "service-specific string with publisher restrictions incl. vendors > 32767; default segment sequence (core + publisherTC)",
  setup(m) {
    m.isServiceSpecific = true;
    m.purposeConsents.set([1, 2, 3, 4]);
    m.vendorConsents.set([1, 2, 3, 32768]);
    m.vendorLegitimateInterests.set([2, 40000]);
    const add = (p, t, ids) => {
      const pr = new PurposeRestriction(p, t);
      ids.forEach((id) => m.publisherRestrictions.add(id, pr));
    };
    add(1, RestrictionType.NOT_ALLOWED, [1, 2, 3, 4, 5, 10, 65535]);
    add(2, RestrictionType.REQUIRE_CONSENT, [7, 32767, 32768, 40000]);
    add(3, RestrictionType.REQUIRE_LI, range(100, 200));
    add(7, RestrictionType.NOT_ALLOWED, [40000]);
    add(7, RestrictionType.REQUIRE_CONSENT, [8, 9, 11]);
  },
});

await tcf("tcf_pubrestr_range_spans_gvl_gap", {
  gvl: gvlGap,
  options: { segments: [Segment.CORE] },
  note:
    "QUIRK: restriction requested for vendors 145..149 and 160..165; vendors 150..159 are not in the GVL so " +
    "@iabtcf/core encodes ONE range 145-165 and the decoded restriction contains 150..159 as well",
  setup(m) {
    m.isServiceSpecific = true;
    const pr = new PurposeRestriction(2, RestrictionType.REQUIRE_CONSENT);
    [...range(145, 149), ...range(160, 165)].forEach((id) => m.publisherRestrictions.add(id, pr));
    m.purposeConsents.set([2]);
  },
});

await tcf("tcf_disclosed_vendors", {
  gvl: gvlSmall,
  note: "global-scope string (isServiceSpecific=false), default segment sequence: core + vendorsDisclosed (= every GVL vendor)",
  setup(m) {
    m.purposeConsents.set([1, 2]);
    m.vendorConsents.set([1, 2, 700]);
  },
});

await tcf("tcf_for_vendors_allowed_publisher", {
  gvl: gvlSmall,
  options: { isForVendors: true },
  note: "isForVendors=true: core + vendorsDisclosed + vendorsAllowed + publisherTC",
  setup(m) {
    m.supportOOB = true;
    m.vendorsAllowed.set([2, 8, 700]);
    m.purposeConsents.set([1]);
    m.vendorConsents.set([8]);
    m.publisherConsents.set([1, 3]);
  },
});

await tcf("tcf_publisher_tc_custom_purposes", {
  gvl: gvlMain,
  note: "service-specific: core + publisherTC with 3 custom purposes",
  setup(m) {
    m.isServiceSpecific = true;
    m.purposeConsents.set([1, 2]);
    m.vendorConsents.set([4]);
    m.publisherConsents.set([1, 2, 3, 11]);
    m.publisherLegitimateInterests.set([2, 7]);
    m.numCustomPurposes = 3;
    m.publisherCustomConsents.set([1, 3]);
    m.publisherCustomLegitimateInterests.set([2]);
  },
});

await tcf("tcf_semantic_filtering", {
  gvl: gvlFilter,
  options: CORE_ONLY,
  note:
    "QUIRK: inputs vendor_consent=[1..12,99], vendor_li=[1..12]; @iabtcf/core drops 99 (not in GVL), " +
    "vendor 6 LI (declares no LI/flexible purposes) and vendor 7 consent (declares no consent purposes)",
  setup(m) {
    m.purposeConsents.set([1, 2]);
    m.vendorConsents.set([...range(1, 12), 99]);
    m.vendorLegitimateInterests.set(range(1, 12));
  },
});

await tcf("tcf_subday_timestamps", {
  gvl: gvlMain,
  options: CORE_ONLY,
  note:
    "explicit non-day-aligned timestamps are NOT rounded by the encoder: created 2024-03-01T10:20:30.456Z is stored as " +
    Math.round(Date.parse("2024-03-01T10:20:30.456Z") / 100) +
    " deciseconds (Math.round(ms/100)); last_updated 2024-03-02T23:59:59.900Z as " +
    Math.round(Date.parse("2024-03-02T23:59:59.900Z") / 100) +
    " ds; expect = floor(ds/10) seconds",
  setup(m) {
    m.created = new Date("2024-03-01T10:20:30.456Z");
    m.lastUpdated = new Date("2024-03-02T23:59:59.900Z");
    m.purposeConsents.set([1]);
  },
});

// ---------------------------------------------------------------------------
// GPP (@iabgpp/cmpapi GppModel)
// ---------------------------------------------------------------------------

const SECTION_ORDER = [
  "tcfeuv2", "tcfcav1", "uspv1", "usnat", "usca", "usva", "usco", "usut", "usct",
  "usfl", "usmt", "usor", "ustx", "usde", "usia", "usne", "usnh", "usnj", "ustn",
  "usmn", "usmd", "usin", "usky", "usri",
];

function tcfeuv2FromGpp(g) {
  const f = (n) => g.getFieldValue("tcfeuv2", n);
  const e = {
    version: f("Version"),
    cmp_id: f("CmpId"),
    cmp_version: f("CmpVersion"),
    consent_screen: f("ConsentScreen"),
    consent_language: f("ConsentLanguage"),
    vendor_list_version: f("VendorListVersion"),
    policy_version: f("PolicyVersion"),
    is_service_specific: f("IsServiceSpecific"),
    use_non_standard_stacks: f("UseNonStandardStacks"),
    purpose_one_treatment: f("PurposeOneTreatment"),
    publisher_cc: f("PublisherCountryCode"),
    created: secs(f("Created")),
    last_updated: secs(f("LastUpdated")),
    purposes_consent: boolsToIds(f("PurposeConsents")),
    purposes_li: boolsToIds(f("PurposeLegitimateInterests")),
    special_features: boolsToIds(f("SpecialFeatureOptins")),
    vendor_consent: sortNum(f("VendorConsents")),
    vendor_li: sortNum(f("VendorLegitimateInterests")),
  };
  const pr = (f("PublisherRestrictions") || [])
    .map((r) => ({ purpose: r.getKey(), type: r.getType(), vendors: sortNum(r.getIds()) }))
    .sort((a, b) => a.purpose - b.purpose || a.type - b.type);
  if (pr.length) e.publisher_restrictions = pr;
  e.vendors_disclosed = sortNum(f("VendorsDisclosed"));
  e.publisher_tc = {
    consents: boolsToIds(f("PublisherConsents")),
    legitimate_interests: boolsToIds(f("PublisherLegitimateInterests")),
    num_custom_purposes: f("NumCustomPurposes"),
    custom_consents: boolsToIds(f("PublisherCustomConsents")),
    custom_legitimate_interests: boolsToIds(f("PublisherCustomLegitimateInterests")),
  };
  return e;
}

function tcfcav1FromGpp(g) {
  const sec = g.sections.get("tcfcav1");
  const out = {};
  for (const seg of sec.segments) {
    for (const fn of seg.getFieldNames()) {
      if (/SegmentType$/.test(fn)) continue;
      let v = g.getFieldValue("tcfcav1", fn);
      if (v instanceof Date) v = secs(v);
      else if (Array.isArray(v) && v.length && typeof v[0] === "boolean") v = boolsToIds(v);
      else if (Array.isArray(v) && v.length && v[0] instanceof RangeEntry)
        v = v.map((r) => ({ purpose: r.getKey(), type: r.getType(), vendors: sortNum(r.getIds()) }));
      out[snake(fn)] = v;
    }
  }
  return out;
}

function usFromGpp(g, name) {
  const sec = g.sections.get(name);
  // make sure lazily-decoded segments are materialised
  g.getFieldValue(name, sec.segments[0].getFieldNames()[0]);
  const out = {};
  for (const fn of sec.segments[0].getFieldNames()) out[snake(fn)] = g.getFieldValue(name, fn);
  if (sec.segments.length > 1) {
    const sub = sec.segments[1];
    if (sub.hasField("GpcSegmentIncluded")) {
      if (g.getFieldValue(name, "GpcSegmentIncluded") === true) out.gpc = g.getFieldValue(name, "Gpc");
    } else if (sub.hasField("SensitiveDataConsentSegmentIncluded")) {
      if (g.getFieldValue(name, "SensitiveDataConsentSegmentIncluded") === true)
        out.sensitive_data_processing = g.getFieldValue(name, "SensitiveDataProcessing");
    }
  }
  return out;
}

function gppExpect(str) {
  const g = new GppModel(str);
  const ids = g.getSectionIds();
  const sections = {};
  for (const name of SECTION_ORDER) {
    if (!g.hasSection(name)) continue;
    if (name === "tcfeuv2") sections[name] = tcfeuv2FromGpp(g);
    else if (name === "tcfcav1") sections[name] = tcfcav1FromGpp(g);
    else if (name === "uspv1")
      sections[name] = {
        version: g.getFieldValue(name, "Version"),
        notice: g.getFieldValue(name, "Notice"),
        opt_out_sale: g.getFieldValue(name, "OptOutSale"),
        lspa: g.getFieldValue(name, "LspaCovered"),
      };
    else sections[name] = usFromGpp(g, name);
  }
  return { section_ids: ids, sections };
}

const gppFixtures = [];
function gpp(name, build, note) {
  const g = new GppModel();
  build((sec, field, value) => g.setFieldValue(sec, field, value));
  const str = g.encode();
  const fx = { name, string: str, expect: gppExpect(str) };
  if (note) fx.note = note;
  gppFixtures.push(fx);
  return fx;
}

// set many fields at once
const setAll = (set, sec, obj) => {
  for (const [k, v] of Object.entries(obj)) set(sec, k, v);
};

// -- uspv1 -----------------------------------------------------------------
gpp("gpp_uspv1_only", (set) => setAll(set, "uspv1", { Notice: "Y", OptOutSale: "N", LspaCovered: "N" }));
gpp("gpp_uspv1_dashes", (set) => setAll(set, "uspv1", { Notice: "-", OptOutSale: "-", LspaCovered: "-" }));
gpp("gpp_uspv1_optout_lspa", (set) => setAll(set, "uspv1", { Notice: "Y", OptOutSale: "Y", LspaCovered: "Y" }));

// -- tcfeuv2 ---------------------------------------------------------------
// NB: the GPP TcfEuV2 section stamps Created/LastUpdated with "today" on every
// other setFieldValue, and setting either date sets both. So dates go LAST.
function tcfeuv2Basic(set, over = {}) {
  setAll(set, "tcfeuv2", {
    CmpId: 31,
    CmpVersion: 5,
    ConsentScreen: 2,
    ConsentLanguage: "DE",
    VendorListVersion: 240,
    PolicyVersion: 4,
    IsServiceSpecific: true,
    PurposeOneTreatment: false,
    PublisherCountryCode: "FR",
    SpecialFeatureOptins: idsToBools([1], 12),
    PurposeConsents: idsToBools([1, 2, 3, 4, 7, 9, 10], 24),
    PurposeLegitimateInterests: idsToBools([2, 7, 8], 24),
    VendorConsents: [2, 6, 8, 12, 755, 1000],
    VendorLegitimateInterests: [2, 6, 8],
    ...over,
  });
  set("tcfeuv2", "Created", new Date("2024-04-15T00:00:00Z"));
}

gpp("gpp_tcfeuv2_only", (set) => tcfeuv2Basic(set));

gpp(
  "gpp_tcfeuv2_restrictions_high_vendor_ids",
  (set) =>
    tcfeuv2Basic(set, {
      PolicyVersion: 5,
      VendorConsents: [...range(1, 300), 32768, 40000, 65535],
      VendorLegitimateInterests: range(1, 1200).filter((i) => i % 2 === 0),
      PublisherRestrictions: [
        new RangeEntry(1, 0, [1, 2, 3, 65535]),
        new RangeEntry(2, 1, [7, 32767, 32768, 40000]),
        new RangeEntry(3, 2, range(100, 200)),
      ],
    }),
  "GPP TcfEuV2 encodes restriction ids as plain sorted ranges (no GVL-gap merging); vendor_li is a bitfield, vendor_consent a range",
);

gpp(
  "gpp_tcfeuv2_disclosed_and_publisher",
  (set) =>
    tcfeuv2Basic(set, {
      PurposeLegitimateInterests: idsToBools([1, 2, 3, 7], 24),
      VendorsDisclosed: [...range(1, 40), 755],
      PublisherConsents: idsToBools([1, 2, 11], 24),
      PublisherLegitimateInterests: idsToBools([7], 24),
      NumCustomPurposes: 4,
      PublisherCustomConsents: [true, false, true, true],
      PublisherCustomLegitimateInterests: [false, true, false, false],
    }),
  "QUIRK: purposes_li requested [1,2,3,7]; the GPP lib forces LI for purposes 1,3,4,5,6 to false",
);

gpp("gpp_tcfeuv2_empty_vendors", (set) =>
  tcfeuv2Basic(set, {
    PurposeConsents: idsToBools([], 24),
    PurposeLegitimateInterests: idsToBools([], 24),
    SpecialFeatureOptins: idsToBools([], 12),
    VendorConsents: [],
    VendorLegitimateInterests: [],
  }),
);

// -- tcfcav1 (id 5; not in the brief's list, included for completeness) ------
gpp("gpp_tcfcav1", (set) => {
  setAll(set, "tcfcav1", {
    CmpId: 50,
    CmpVersion: 2,
    ConsentScreen: 3,
    ConsentLanguage: "FR",
    VendorListVersion: 70,
    TcfPolicyVersion: 2,
    SpecialFeatureExpressConsent: idsToBools([1], 12),
    PurposesExpressConsent: idsToBools([1, 2, 3], 24),
    PurposesImpliedConsent: idsToBools([4, 5], 24),
    VendorExpressConsent: [1, 5, 12, 400],
    VendorImpliedConsent: [2, 3],
    PubPurposesExpressConsent: idsToBools([1], 24),
    NumCustomPurposes: 2,
    CustomPurposesExpressConsent: [true, false],
    CustomPurposesImpliedConsent: [false, true],
    DisclosedVendors: [1, 2, 3, 5, 12, 400],
  });
  // TcfCaV1 stamps BOTH dates with "now" (ms precision) on every other field set;
  // Created and LastUpdated are independent of each other, so set both last.
  set("tcfcav1", "Created", new Date("2024-06-01T12:00:00Z"));
  set("tcfcav1", "LastUpdated", new Date("2024-06-02T08:30:00Z"));
});

// -- usnat -------------------------------------------------------------------
const usnatV2 = {
  SharingNotice: 1,
  SaleOptOutNotice: 1,
  SharingOptOutNotice: 1,
  TargetedAdvertisingOptOutNotice: 1,
  SensitiveDataProcessingOptOutNotice: 1,
  SensitiveDataLimitUseNotice: 1,
  SaleOptOut: 2,
  SharingOptOut: 2,
  TargetedAdvertisingOptOut: 1,
  SensitiveDataProcessing: [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 1, 0, 2],
  KnownChildSensitiveDataConsents: [1, 2, 1],
  PersonalDataConsents: 1,
  MspaCoveredTransaction: 1,
  MspaOptOutOptionMode: 2,
  MspaServiceProviderMode: 1,
};
gpp("gpp_usnat_v2_gpc_true", (set) => {
  setAll(set, "usnat", usnatV2);
  set("usnat", "Gpc", true);
});
gpp("gpp_usnat_v2_gpc_false", (set) => {
  setAll(set, "usnat", { ...usnatV2, SaleOptOut: 1, MspaServiceProviderMode: 2 });
  set("usnat", "Gpc", false);
});
gpp("gpp_usnat_v2_no_gpc", (set) => {
  setAll(set, "usnat", usnatV2);
  set("usnat", "GpcSegmentIncluded", false);
});
gpp(
  "gpp_usnat_v1_gpc_true",
  (set) => {
    setAll(set, "usnat", {
      ...usnatV2,
      Version: 1,
      SensitiveDataProcessing: [2, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 1],
      KnownChildSensitiveDataConsents: [2, 1],
    });
    set("usnat", "Gpc", true);
  },
  "usnat Version 1 layout: 12 sensitive-data fields, 2 child-consent fields (60-bit core)",
);
gpp("gpp_usnat_v1_no_gpc", (set) => {
  setAll(set, "usnat", {
    ...usnatV2,
    Version: 1,
    SensitiveDataProcessing: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2],
    KnownChildSensitiveDataConsents: [1, 1],
    MspaCoveredTransaction: 2,
  });
  set("usnat", "GpcSegmentIncluded", false);
});

// -- state sections ----------------------------------------------------------
gpp("gpp_usca_gpc_true", (set) => {
  setAll(set, "usca", {
    SaleOptOutNotice: 1,
    SharingOptOutNotice: 1,
    SensitiveDataLimitUseNotice: 2,
    SaleOptOut: 2,
    SharingOptOut: 2,
    SensitiveDataProcessing: [0, 1, 2, 0, 1, 2, 0, 1, 2],
    KnownChildSensitiveDataConsents: [1, 2],
    PersonalDataConsents: 2,
    MspaCoveredTransaction: 1,
    MspaOptOutOptionMode: 1,
    MspaServiceProviderMode: 2,
    Gpc: true,
  });
});
gpp("gpp_usca_no_gpc", (set) => {
  setAll(set, "usca", {
    SaleOptOutNotice: 1,
    SaleOptOut: 1,
    SensitiveDataProcessing: [1, 1, 1, 1, 1, 1, 1, 1, 1],
    MspaCoveredTransaction: 2,
    GpcSegmentIncluded: false,
  });
});
gpp("gpp_usva", (set) =>
  setAll(set, "usva", {
    SharingNotice: 1,
    SaleOptOutNotice: 1,
    TargetedAdvertisingOptOutNotice: 2,
    SaleOptOut: 2,
    TargetedAdvertisingOptOut: 1,
    SensitiveDataProcessing: [1, 2, 0, 1, 2, 0, 1, 2],
    KnownChildSensitiveDataConsents: 2,
    MspaCoveredTransaction: 1,
    MspaOptOutOptionMode: 2,
    MspaServiceProviderMode: 0,
  }),
);
gpp("gpp_usco_gpc_false", (set) =>
  setAll(set, "usco", {
    SharingNotice: 2,
    SaleOptOutNotice: 1,
    TargetedAdvertisingOptOutNotice: 1,
    SaleOptOut: 1,
    TargetedAdvertisingOptOut: 2,
    SensitiveDataProcessing: [2, 2, 1, 1, 0, 0, 2],
    KnownChildSensitiveDataConsents: 1,
    MspaCoveredTransaction: 1,
    MspaOptOutOptionMode: 1,
    MspaServiceProviderMode: 2,
    Gpc: false,
  }),
);
gpp("gpp_usco_no_gpc", (set) =>
  setAll(set, "usco", { SharingNotice: 1, SaleOptOut: 2, GpcSegmentIncluded: false }),
);
gpp("gpp_usut", (set) =>
  setAll(set, "usut", {
    SharingNotice: 1,
    SaleOptOutNotice: 1,
    TargetedAdvertisingOptOutNotice: 1,
    SensitiveDataProcessingOptOutNotice: 2,
    SaleOptOut: 2,
    TargetedAdvertisingOptOut: 2,
    SensitiveDataProcessing: [0, 0, 1, 1, 2, 2, 1, 0],
    KnownChildSensitiveDataConsents: 1,
    MspaCoveredTransaction: 2,
    MspaOptOutOptionMode: 0,
    MspaServiceProviderMode: 0,
  }),
);
gpp("gpp_usct_gpc_true", (set) =>
  setAll(set, "usct", {
    SharingNotice: 1,
    SaleOptOutNotice: 2,
    TargetedAdvertisingOptOutNotice: 1,
    SaleOptOut: 1,
    TargetedAdvertisingOptOut: 2,
    SensitiveDataProcessing: [2, 1, 2, 1, 2, 1, 2, 1],
    KnownChildSensitiveDataConsents: [1, 0, 2],
    MspaCoveredTransaction: 1,
    MspaOptOutOptionMode: 2,
    MspaServiceProviderMode: 1,
    Gpc: true,
  }),
);
gpp("gpp_usct_no_gpc", (set) =>
  setAll(set, "usct", { SaleOptOut: 2, KnownChildSensitiveDataConsents: [2, 2, 2], GpcSegmentIncluded: false }),
);

// newer sections (ids 13+)
gpp("gpp_usfl", (set) =>
  setAll(set, "usfl", {
    ProcessingNotice: 1,
    SaleOptOutNotice: 1,
    TargetedAdvertisingOptOutNotice: 2,
    SaleOptOut: 2,
    TargetedAdvertisingOptOut: 1,
    SensitiveDataProcessing: [1, 2, 1, 2, 1, 2, 1, 2],
    KnownChildSensitiveDataConsents: [0, 1, 2],
    AdditionalDataProcessingConsent: 1,
    MspaCoveredTransaction: 1,
    MspaOptOutOptionMode: 1,
    MspaServiceProviderMode: 2,
  }),
);
gpp("gpp_usmt_gpc_true", (set) =>
  setAll(set, "usmt", {
    SharingNotice: 1,
    SaleOptOutNotice: 1,
    TargetedAdvertisingOptOutNotice: 1,
    SaleOptOut: 1,
    TargetedAdvertisingOptOut: 1,
    SensitiveDataProcessing: [2, 0, 0, 0, 0, 0, 0, 1],
    KnownChildSensitiveDataConsents: [2, 1, 0],
    AdditionalDataProcessingConsent: 2,
    MspaCoveredTransaction: 2,
    MspaOptOutOptionMode: 0,
    MspaServiceProviderMode: 0,
    Gpc: true,
  }),
);
gpp("gpp_usor_no_gpc", (set) =>
  setAll(set, "usor", {
    ProcessingNotice: 1,
    SaleOptOutNotice: 2,
    TargetedAdvertisingOptOutNotice: 1,
    SaleOptOut: 1,
    TargetedAdvertisingOptOut: 2,
    SensitiveDataProcessing: [1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2],
    KnownChildSensitiveDataConsents: [1, 2, 1],
    AdditionalDataProcessingConsent: 1,
    MspaCoveredTransaction: 1,
    MspaOptOutOptionMode: 2,
    MspaServiceProviderMode: 1,
    GpcSegmentIncluded: false,
  }),
);
gpp("gpp_ustx_gpc_false", (set) =>
  setAll(set, "ustx", {
    ProcessingNotice: 2,
    SaleOptOutNotice: 1,
    TargetedAdvertisingOptOutNotice: 1,
    SaleOptOut: 2,
    TargetedAdvertisingOptOut: 2,
    SensitiveDataProcessing: [0, 1, 0, 2, 0, 1, 0, 2],
    KnownChildSensitiveDataConsents: 2,
    AdditionalDataProcessingConsent: 1,
    MspaCoveredTransaction: 1,
    MspaOptOutOptionMode: 1,
    MspaServiceProviderMode: 2,
    Gpc: false,
  }),
);
gpp("gpp_usde_gpc_true", (set) =>
  setAll(set, "usde", {
    ProcessingNotice: 1,
    SaleOptOutNotice: 1,
    TargetedAdvertisingOptOutNotice: 1,
    SaleOptOut: 2,
    TargetedAdvertisingOptOut: 1,
    SensitiveDataProcessing: [1, 2, 0, 1, 2, 0, 1, 2, 2],
    KnownChildSensitiveDataConsents: [1, 2, 0, 1, 2],
    AdditionalDataProcessingConsent: 2,
    MspaCoveredTransaction: 1,
    MspaOptOutOptionMode: 0,
    MspaServiceProviderMode: 1,
    Gpc: true,
  }),
);
gpp("gpp_usia_gpc_true", (set) =>
  setAll(set, "usia", {
    ProcessingNotice: 1,
    SaleOptOutNotice: 2,
    TargetedAdvertisingOptOutNotice: 1,
    SensitiveDataOptOutNotice: 1,
    SaleOptOut: 1,
    TargetedAdvertisingOptOut: 2,
    SensitiveDataProcessing: [2, 2, 2, 2, 1, 1, 1, 1],
    KnownChildSensitiveDataConsents: 1,
    MspaCoveredTransaction: 2,
    MspaOptOutOptionMode: 0,
    MspaServiceProviderMode: 0,
    Gpc: true,
  }),
);
gpp("gpp_usne_no_gpc", (set) =>
  setAll(set, "usne", {
    ProcessingNotice: 1,
    SaleOptOutNotice: 1,
    TargetedAdvertisingOptOutNotice: 2,
    SaleOptOut: 1,
    TargetedAdvertisingOptOut: 1,
    SensitiveDataProcessing: [0, 0, 0, 0, 2, 2, 2, 2],
    KnownChildSensitiveDataConsents: 2,
    AdditionalDataProcessingConsent: 1,
    MspaCoveredTransaction: 1,
    MspaOptOutOptionMode: 1,
    MspaServiceProviderMode: 2,
    GpcSegmentIncluded: false,
  }),
);
gpp("gpp_usnh_gpc_false", (set) =>
  setAll(set, "usnh", {
    ProcessingNotice: 2,
    SaleOptOutNotice: 2,
    TargetedAdvertisingOptOutNotice: 2,
    SaleOptOut: 1,
    TargetedAdvertisingOptOut: 1,
    SensitiveDataProcessing: [1, 0, 1, 0, 1, 0, 1, 0],
    KnownChildSensitiveDataConsents: [2, 0, 1],
    AdditionalDataProcessingConsent: 2,
    MspaCoveredTransaction: 1,
    MspaOptOutOptionMode: 2,
    MspaServiceProviderMode: 1,
    Gpc: false,
  }),
);
gpp("gpp_usnj_gpc_true", (set) =>
  setAll(set, "usnj", {
    ProcessingNotice: 1,
    SaleOptOutNotice: 1,
    TargetedAdvertisingOptOutNotice: 1,
    SaleOptOut: 2,
    TargetedAdvertisingOptOut: 2,
    SensitiveDataProcessing: [1, 2, 1, 2, 1, 2, 1, 2, 1, 2],
    KnownChildSensitiveDataConsents: [2, 1, 0, 1, 2],
    AdditionalDataProcessingConsent: 1,
    MspaCoveredTransaction: 1,
    MspaOptOutOptionMode: 1,
    MspaServiceProviderMode: 2,
    Gpc: true,
  }),
);
gpp("gpp_ustn_no_gpc", (set) =>
  setAll(set, "ustn", {
    ProcessingNotice: 1,
    SaleOptOutNotice: 1,
    TargetedAdvertisingOptOutNotice: 1,
    SaleOptOut: 1,
    TargetedAdvertisingOptOut: 2,
    SensitiveDataProcessing: [2, 1, 0, 0, 0, 0, 1, 2],
    KnownChildSensitiveDataConsents: 1,
    AdditionalDataProcessingConsent: 2,
    MspaCoveredTransaction: 2,
    MspaOptOutOptionMode: 0,
    MspaServiceProviderMode: 0,
    GpcSegmentIncluded: false,
  }),
);
gpp("gpp_usmn_gpc_true", (set) =>
  setAll(set, "usmn", {
    ProcessingNotice: 1,
    SaleOptOutNotice: 2,
    TargetedAdvertisingOptOutNotice: 2,
    SaleOptOut: 1,
    TargetedAdvertisingOptOut: 1,
    SensitiveDataProcessing: [0, 2, 0, 2, 0, 2, 0, 2],
    KnownChildSensitiveDataConsents: 2,
    AdditionalDataProcessingConsent: 1,
    MspaCoveredTransaction: 1,
    MspaOptOutOptionMode: 1,
    MspaServiceProviderMode: 2,
    Gpc: true,
  }),
);
gpp(
  "gpp_usmd_gpc_false",
  (set) =>
    setAll(set, "usmd", {
      MspaVersion: 1,
      MspaCoveredTransaction: 1,
      MspaMode: 2,
      ProcessingNotice: 1,
      SaleOptOutNotice: 1,
      TargetedAdvertisingOptOutNotice: 2,
      SaleOptOut: 2,
      TargetedAdvertisingOptOut: 1,
      AdditionalDataProcessingConsent: 2,
      Gpc: false,
    }),
  "usmd uses the newer layout: MspaVersion first, MSPA fields before the notices, no sensitive-data list",
);
gpp("gpp_usmd_no_gpc", (set) =>
  setAll(set, "usmd", { MspaCoveredTransaction: 2, SaleOptOut: 1, GpcSegmentIncluded: false }),
);
gpp(
  "gpp_usin_with_sensitive_segment",
  (set) =>
    setAll(set, "usin", {
      MspaCoveredTransaction: 1,
      MspaMode: 1,
      ProcessingNotice: 1,
      SaleOptOutNotice: 2,
      TargetedAdvertisingOptOutNotice: 1,
      SaleOptOut: 1,
      TargetedAdvertisingOptOut: 2,
      KnownChildSensitiveDataConsents: 2,
      AdditionalDataProcessingConsent: 1,
      SensitiveDataProcessing: [1, 2, 1, 2, 0, 0, 2, 1],
    }),
  "usin/usky/usri: optional 2nd sub-section = SensitiveDataProcessing (8x2 bits) with NO segment-type prefix",
);
gpp("gpp_usin_without_sensitive_segment", (set) =>
  setAll(set, "usin", {
    MspaCoveredTransaction: 2,
    ProcessingNotice: 2,
    SaleOptOut: 2,
    SensitiveDataConsentSegmentIncluded: false,
  }),
);
gpp("gpp_usky_with_sensitive_segment", (set) =>
  setAll(set, "usky", {
    MspaCoveredTransaction: 1,
    MspaMode: 2,
    ProcessingNotice: 1,
    SaleOptOutNotice: 1,
    TargetedAdvertisingOptOutNotice: 1,
    SaleOptOut: 2,
    TargetedAdvertisingOptOut: 2,
    KnownChildSensitiveDataConsents: 1,
    AdditionalDataProcessingConsent: 2,
    SensitiveDataProcessing: [2, 2, 1, 1, 2, 2, 1, 1],
  }),
);
gpp("gpp_usky_without_sensitive_segment", (set) =>
  setAll(set, "usky", { SaleOptOut: 1, SensitiveDataConsentSegmentIncluded: false }),
);
gpp("gpp_usri_with_sensitive_segment", (set) =>
  setAll(set, "usri", {
    MspaCoveredTransaction: 2,
    MspaMode: 0,
    ProcessingNotice: 2,
    SaleOptOutNotice: 1,
    TargetedAdvertisingOptOutNotice: 2,
    SaleOptOut: 1,
    TargetedAdvertisingOptOut: 1,
    KnownChildSensitiveDataConsents: 2,
    AdditionalDataProcessingConsent: 1,
    SensitiveDataProcessing: [0, 1, 0, 1, 0, 1, 0, 2],
  }),
);
gpp("gpp_usri_without_sensitive_segment", (set) =>
  setAll(set, "usri", { MspaCoveredTransaction: 1, SaleOptOut: 2, SensitiveDataConsentSegmentIncluded: false }),
);

// -- multi-section strings ----------------------------------------------------
gpp("gpp_multi_tcfeuv2_uspv1_usnat_usca", (set) => {
  tcfeuv2Basic(set);
  setAll(set, "uspv1", { Notice: "Y", OptOutSale: "Y", LspaCovered: "N" });
  setAll(set, "usnat", { ...usnatV2, Gpc: true });
  setAll(set, "usca", { SaleOptOutNotice: 1, SaleOptOut: 2, GpcSegmentIncluded: false });
});
gpp("gpp_multi_uspv1_usnat", (set) => {
  setAll(set, "uspv1", { Notice: "Y", OptOutSale: "N", LspaCovered: "Y" });
  setAll(set, "usnat", { ...usnatV2, GpcSegmentIncluded: false });
});
gpp(
  "gpp_multi_contiguous_7_to_12",
  (set) => {
    setAll(set, "usnat", { SaleOptOut: 2, Gpc: true });
    setAll(set, "usca", { SaleOptOut: 2, Gpc: false });
    setAll(set, "usva", { SaleOptOut: 2 });
    setAll(set, "usco", { SaleOptOut: 2, GpcSegmentIncluded: false });
    setAll(set, "usut", { SaleOptOut: 2 });
    setAll(set, "usct", { SaleOptOut: 2, Gpc: true });
  },
  "section ids 7..12 are one run: the header encodes them as a single Fibonacci range entry",
);
gpp("gpp_multi_sparse_ids", (set) => {
  tcfeuv2Basic(set, { VendorConsents: [1, 2, 3], VendorLegitimateInterests: [] });
  setAll(set, "uspv1", { Notice: "N", OptOutSale: "N", LspaCovered: "N" });
  setAll(set, "usca", { SaleOptOut: 1, Gpc: true });
  setAll(set, "usfl", { SaleOptOut: 2 });
  setAll(set, "usri", { SaleOptOut: 1, SensitiveDataProcessing: [1, 1, 1, 1, 1, 1, 1, 1] });
});
gpp("gpp_multi_all_us_states", (set) => {
  const names = [
    "usnat", "usca", "usva", "usco", "usut", "usct", "usfl", "usmt", "usor", "ustx", "usde",
    "usia", "usne", "usnh", "usnj", "ustn", "usmn", "usmd", "usin", "usky", "usri",
  ];
  names.forEach((n, i) => setAll(set, n, { SaleOptOut: (i % 2) + 1 }));
  set("usnat", "GpcSegmentIncluded", false);
  set("usmd", "Gpc", true);
  set("usky", "SensitiveDataConsentSegmentIncluded", false);
});

// ---------------------------------------------------------------------------
// Independent bit-level verification.
//
// This is a from-scratch reader written from the layouts documented in
// ../fixtures/README.md (NOT using either library's decoder). Every fixture
// string is parsed with it and compared with the library round-trip
// expectation, so the documented layouts are proven against the real output.
// ---------------------------------------------------------------------------

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
class Bits {
  constructor(s) {
    this.b = [...s].map((c) => {
      const n = B64.indexOf(c);
      assert(n >= 0, "bad base64url char " + c);
      return n.toString(2).padStart(6, "0");
    }).join("");
    this.p = 0;
  }
  int(n) {
    assert(this.p + n <= this.b.length, `read past end (${this.p}+${n} > ${this.b.length})`);
    const v = n === 0 ? 0 : parseInt(this.b.slice(this.p, this.p + n), 2);
    this.p += n;
    return v;
  }
  bool() { return this.int(1) === 1; }
  ids(n) { const out = []; for (let i = 1; i <= n; i++) if (this.bool()) out.push(i); return out; }
  str(n) { let s = ""; for (let i = 0; i < n; i++) s += String.fromCharCode(65 + this.int(6)); return s; }
  // TCF vendor section: MaxVendorId(16) IsRangeEncoding(1) then bitfield or ranges
  vendors() {
    const max = this.int(16);
    if (!this.bool()) return this.ids(max);
    return this.rangeEntries();
  }
  rangeEntries() {
    const n = this.int(12), out = [];
    for (let i = 0; i < n; i++) {
      const isRange = this.bool();
      const a = this.int(16);
      const b = isRange ? this.int(16) : a;
      for (let v = a; v <= b; v++) out.push(v);
    }
    return sortNum(out);
  }
  fib() {
    // Fibonacci code: bit i (from 0) weighs F(i+2) = 1,2,3,5,8...; ends at "11"
    let v = 0, a = 1, b = 2, prev = 0;
    for (;;) {
      const bit = this.int(1);
      if (bit && prev) return v;
      if (bit) v += a;
      prev = bit;
      [a, b] = [b, a + b];
    }
  }
}

function parseTcfString(str) {
  const e = {};
  for (const seg of str.split(".")) {
    const r = new Bits(seg);
    const first3 = parseInt(r.b.slice(0, 3), 2);
    if (first3 === 0) {
      e.version = r.int(6);
      e.created = Math.floor(r.int(36) / 10);
      e.last_updated = Math.floor(r.int(36) / 10);
      e.cmp_id = r.int(12);
      e.cmp_version = r.int(12);
      e.consent_screen = r.int(6);
      e.consent_language = r.str(2);
      e.vendor_list_version = r.int(12);
      e.policy_version = r.int(6);
      e.is_service_specific = r.bool();
      e.use_non_standard_stacks = r.bool();
      e.special_features = r.ids(12);
      e.purposes_consent = r.ids(24);
      e.purposes_li = r.ids(24);
      e.purpose_one_treatment = r.bool();
      e.publisher_cc = r.str(2);
      e.vendor_consent = r.vendors();
      e.vendor_li = r.vendors();
      const npr = r.int(12);
      const pr = [];
      for (let i = 0; i < npr; i++) {
        const purpose = r.int(6), type = r.int(2);
        pr.push({ purpose, type, vendors: r.rangeEntries() });
      }
      if (pr.length) e.publisher_restrictions = pr.sort((a, b) => a.purpose - b.purpose || a.type - b.type);
    } else {
      const t = r.int(3);
      if (t === 1) e.vendors_disclosed = r.vendors();
      else if (t === 2) e.vendors_allowed = r.vendors();
      else if (t === 3) {
        const consents = r.ids(24), li = r.ids(24), n = r.int(6);
        e.publisher_tc = {
          consents, legitimate_interests: li, num_custom_purposes: n,
          custom_consents: r.ids(n), custom_legitimate_interests: r.ids(n),
        };
      } else throw new Error("unknown TCF segment type " + t);
    }
  }
  return e;
}

// Layouts of the GPP US sections, as [name, bitsPerElement, count?]; a count
// means a fixed-length list of 2-bit ints. sub: "gpc" = optional ".<GpcSegmentType(2)=1><Gpc(1)>"
// sub-section; "sdc" = optional ".<SensitiveDataProcessing 8x2>" sub-section
// WITHOUT any segment-type prefix.
const N = (n) => [n, 2];
const L = (n, c) => [n, 2, c];
const MSPA3 = [N("mspa_covered_transaction"), N("mspa_opt_out_option_mode"), N("mspa_service_provider_mode")];
const US_LAYOUTS = {
  usnat: { id: 7, sub: "gpc", core: [["version", 6], N("sharing_notice"), N("sale_opt_out_notice"), N("sharing_opt_out_notice"),
    N("targeted_advertising_opt_out_notice"), N("sensitive_data_processing_opt_out_notice"), N("sensitive_data_limit_use_notice"),
    N("sale_opt_out"), N("sharing_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 16),
    L("known_child_sensitive_data_consents", 3), N("personal_data_consents"), ...MSPA3] },
  usca: { id: 8, sub: "gpc", core: [["version", 6], N("sale_opt_out_notice"), N("sharing_opt_out_notice"), N("sensitive_data_limit_use_notice"),
    N("sale_opt_out"), N("sharing_opt_out"), L("sensitive_data_processing", 9), L("known_child_sensitive_data_consents", 2),
    N("personal_data_consents"), ...MSPA3] },
  usva: { id: 9, sub: null, core: [["version", 6], N("sharing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 8), N("known_child_sensitive_data_consents"), ...MSPA3] },
  usco: { id: 10, sub: "gpc", core: [["version", 6], N("sharing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 7), N("known_child_sensitive_data_consents"), ...MSPA3] },
  usut: { id: 11, sub: null, core: [["version", 6], N("sharing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sensitive_data_processing_opt_out_notice"), N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 8),
    N("known_child_sensitive_data_consents"), ...MSPA3] },
  usct: { id: 12, sub: "gpc", core: [["version", 6], N("sharing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 8), L("known_child_sensitive_data_consents", 3), ...MSPA3] },
  usfl: { id: 13, sub: null, core: [["version", 6], N("processing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 8), L("known_child_sensitive_data_consents", 3),
    N("additional_data_processing_consent"), ...MSPA3] },
  usmt: { id: 14, sub: "gpc", core: [["version", 6], N("sharing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 8), L("known_child_sensitive_data_consents", 3),
    N("additional_data_processing_consent"), ...MSPA3] },
  usor: { id: 15, sub: "gpc", core: [["version", 6], N("processing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 11), L("known_child_sensitive_data_consents", 3),
    N("additional_data_processing_consent"), ...MSPA3] },
  ustx: { id: 16, sub: "gpc", core: [["version", 6], N("processing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 8), N("known_child_sensitive_data_consents"),
    N("additional_data_processing_consent"), ...MSPA3] },
  usde: { id: 17, sub: "gpc", core: [["version", 6], N("processing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 9), L("known_child_sensitive_data_consents", 5),
    N("additional_data_processing_consent"), ...MSPA3] },
  usia: { id: 18, sub: "gpc", core: [["version", 6], N("processing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sensitive_data_opt_out_notice"), N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 8),
    N("known_child_sensitive_data_consents"), ...MSPA3] },
  usne: { id: 19, sub: "gpc", core: [["version", 6], N("processing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 8), N("known_child_sensitive_data_consents"),
    N("additional_data_processing_consent"), ...MSPA3] },
  usnh: { id: 20, sub: "gpc", core: [["version", 6], N("processing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 8), L("known_child_sensitive_data_consents", 3),
    N("additional_data_processing_consent"), ...MSPA3] },
  usnj: { id: 21, sub: "gpc", core: [["version", 6], N("processing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 10), L("known_child_sensitive_data_consents", 5),
    N("additional_data_processing_consent"), ...MSPA3] },
  ustn: { id: 22, sub: "gpc", core: [["version", 6], N("processing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 8), N("known_child_sensitive_data_consents"),
    N("additional_data_processing_consent"), ...MSPA3] },
  usmn: { id: 23, sub: "gpc", core: [["version", 6], N("processing_notice"), N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"),
    N("sale_opt_out"), N("targeted_advertising_opt_out"), L("sensitive_data_processing", 8), N("known_child_sensitive_data_consents"),
    N("additional_data_processing_consent"), ...MSPA3] },
  usmd: { id: 24, sub: "gpc", core: [["mspa_version", 6], N("mspa_covered_transaction"), N("mspa_mode"), N("processing_notice"),
    N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"), N("sale_opt_out"), N("targeted_advertising_opt_out"),
    N("additional_data_processing_consent")] },
};
const NEW_MSPA_SDC = [["mspa_version", 6], N("mspa_covered_transaction"), N("mspa_mode"), N("processing_notice"),
  N("sale_opt_out_notice"), N("targeted_advertising_opt_out_notice"), N("sale_opt_out"), N("targeted_advertising_opt_out"),
  N("known_child_sensitive_data_consents"), N("additional_data_processing_consent")];
US_LAYOUTS.usin = { id: 25, sub: "sdc", core: NEW_MSPA_SDC };
US_LAYOUTS.usky = { id: 26, sub: "sdc", core: NEW_MSPA_SDC };
US_LAYOUTS.usri = { id: 27, sub: "sdc", core: NEW_MSPA_SDC };
const ID_TO_NAME = { 2: "tcfeuv2", 5: "tcfcav1", 6: "uspv1" };
for (const [n, l] of Object.entries(US_LAYOUTS)) ID_TO_NAME[l.id] = n;

function readFields(r, fields) {
  const o = {};
  for (const [name, w, count] of fields) {
    if (count === undefined) o[name] = r.int(w);
    else o[name] = range(1, count).map(() => r.int(w));
  }
  return o;
}

function parseUs(name, s) {
  const [core, sub, ...rest] = s.split(".");
  assert(rest.length === 0, "too many sub-sections");
  const r = new Bits(core);
  let layout = US_LAYOUTS[name].core;
  if (name === "usnat" && parseInt(r.b.slice(0, 6), 2) === 1) {
    // usnat version 1: 12 sensitive-data fields, 2 child-consent fields
    layout = layout.map((f) =>
      f[0] === "sensitive_data_processing" ? L(f[0], 12) : f[0] === "known_child_sensitive_data_consents" ? L(f[0], 2) : f);
  }
  const o = readFields(r, layout);
  assert(/^0*$/.test(r.b.slice(r.p)), "non-zero padding");
  if (sub !== undefined) {
    const rs = new Bits(sub);
    if (US_LAYOUTS[name].sub === "gpc") {
      assert(rs.int(2) === 1, "GpcSegmentType must be 1");
      o.gpc = rs.bool();
    } else if (US_LAYOUTS[name].sub === "sdc") {
      o.sensitive_data_processing = range(1, 8).map(() => rs.int(2));
    } else throw new Error(name + " has no sub-section");
  }
  return o;
}

function parseGppString(str) {
  const [hdr, ...secs] = str.split("~");
  const r = new Bits(hdr);
  assert(r.int(6) === 3, "header type 3");
  assert(r.int(6) === 1, "header version 1");
  const n = r.int(12);
  const ids = [];
  let last = 0;
  for (let i = 0; i < n; i++) {
    const isRange = r.bool();
    const start = last + r.fib();
    if (isRange) {
      const end = start + r.fib();
      for (let v = start; v <= end; v++) ids.push(v);
      last = end;
    } else {
      ids.push(start);
      last = start;
    }
  }
  assert(ids.length === secs.length, "section count");
  const sections = {};
  ids.forEach((id, i) => {
    const name = ID_TO_NAME[id];
    const s = secs[i];
    if (name === "uspv1") {
      assert(s.length === 4, "uspv1 is 4 chars");
      sections[name] = { version: Number(s[0]), notice: s[1], opt_out_sale: s[2], lspa: s[3] };
    } else if (name === "tcfeuv2") {
      const e = parseTcfString(s);
      sections[name] = e;
    } else if (name === "tcfcav1") {
      sections[name] = null; // not independently parsed
    } else sections[name] = parseUs(name, s);
  });
  return { section_ids: ids, sections };
}

const canon = (x) => JSON.stringify(x, (k, v) =>
  v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort()) : v);

for (const f of tcfFixtures) {
  const got = parseTcfString(f.string);
  assert(canon(got) === canon(f.expect), `independent TCF parse differs for ${f.name}\n${canon(got)}\n${canon(f.expect)}`);
}
for (const f of gppFixtures) {
  const got = parseGppString(f.string);
  const want = JSON.parse(JSON.stringify(f.expect));
  if (want.sections.tcfcav1) want.sections.tcfcav1 = null;
  assert(canon(got) === canon(want), `independent GPP parse differs for ${f.name}\n${canon(got)}\n${canon(want)}`);
}

// Cross-library check: GPP tcfeuv2 sections must decode identically with
// @iabtcf/core (the format is the TCF v2 string).
for (const f of gppFixtures) {
  const tcfSec = f.expect.sections.tcfeuv2;
  if (!tcfSec) continue;
  const ids = f.expect.section_ids;
  const s = f.string.split("~")[1 + ids.indexOf(2)];
  const m = TCString.decode(s);
  const present = new Set(s.split(".").map((x) => SEG_BY_FIRST_CHAR(x[0])));
  const e = tcfExpect(m, present);
  assert(canon(e) === canon(tcfSec), `@iabtcf/core disagrees on GPP tcfeuv2 in ${f.name}\n${canon(e)}\n${canon(tcfSec)}`);
}
// ...and TCF strings made by @iabtcf/core must decode identically with the GPP lib
for (const f of tcfFixtures) {
  const g = new GppModel("DBABMA~" + f.string);
  const e = tcfeuv2FromGpp(g);
  // the GPP lib reports empty disclosed/publisher segments when absent
  if (!f.expect.vendors_disclosed) delete e.vendors_disclosed;
  if (!f.expect.publisher_tc) delete e.publisher_tc;
  if (f.expect.vendors_allowed) e.vendors_allowed = sortNum(g.getFieldValue("tcfeuv2", "VendorsAllowed"));
  assert(canon(e) === canon(f.expect), `GPP lib disagrees on TCF ${f.name}\n${canon(e)}\n${canon(f.expect)}`);
}

// ---------------------------------------------------------------------------
// checks + output
// ---------------------------------------------------------------------------

function checkUnique(list) {
  const seen = new Set();
  for (const f of list) {
    assert(!seen.has(f.name), "duplicate fixture name " + f.name);
    seen.add(f.name);
  }
}
checkUnique(tcfFixtures);
checkUnique(gppFixtures);

// GPP: re-encoding a decoded model must reproduce the string byte for byte
for (const f of gppFixtures) {
  const g = new GppModel(f.string);
  g.toObject(); // force full decode
  g.dirty = true;
  for (const [, s] of g.sections) {
    s.setIsDirty(true);
    for (const seg of s.segments) seg.dirty = true;
  }
  const re = g.encode();
  assert(re === f.string, `gpp re-encode mismatch for ${f.name}: ${re} != ${f.string}`);
}

mkdirSync(outDir, { recursive: true });
// Pretty JSON, but arrays of scalars stay on one line (readable diffs).
function pretty(v, ind = "") {
  const next = ind + "  ";
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    if (v.every((x) => x === null || typeof x !== "object")) return "[" + v.map((x) => JSON.stringify(x)).join(", ") + "]";
    return "[\n" + v.map((x) => next + pretty(x, next)).join(",\n") + "\n" + ind + "]";
  }
  if (v && typeof v === "object") {
    const ks = Object.keys(v);
    if (ks.length === 0) return "{}";
    return "{\n" + ks.map((k) => next + JSON.stringify(k) + ": " + pretty(v[k], next)).join(",\n") + "\n" + ind + "}";
  }
  return JSON.stringify(v);
}
writeFileSync(join(outDir, "tcf.json"), pretty(tcfFixtures) + "\n");
writeFileSync(join(outDir, "gpp.json"), pretty(gppFixtures) + "\n");
console.log(`wrote ${tcfFixtures.length} TCF fixtures and ${gppFixtures.length} GPP fixtures to ${outDir}`);
