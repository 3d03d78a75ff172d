// A BERT WordPiece tokenizer read from a Hugging Face tokenizer.json, as the `tokenizers` library runs it:
// BertNormalizer -> BertPreTokenizer -> WordPiece -> [CLS] ... [SEP], truncation to max_length, padding to
// the batch's longest text. tests/test_hf_web.py checks its ids against `tokenizers` on tricky strings.
"use strict";

class WordPieceTokenizer {
  constructor(config) {
    const { normalizer, pre_tokenizer: pre, model, post_processor: post } = config;
    const refuse = (what, value) => {
      throw new Error(`tokenizer.json: ${what} ${JSON.stringify(value && value.type)} is not supported; ` +
                      "the browser bundle tokenizes BERT WordPiece tokenizers only");
    };
    if (!model || model.type !== "WordPiece") refuse("model", model);
    if (!normalizer || normalizer.type !== "BertNormalizer") refuse("normalizer", normalizer);
    if (!pre || pre.type !== "BertPreTokenizer") refuse("pre_tokenizer", pre);
    this.normalizer = normalizer;
    this.vocab = new Map(Object.entries(model.vocab));
    this.unkId = this.vocab.get(model.unk_token);
    this.prefix = model.continuing_subword_prefix || "##";
    this.maxWordChars = model.max_input_chars_per_word || 100;
    [this.clsId, this.sepId] = specialIds(post, this.vocab, refuse);
    this.maxLength = config.truncation ? config.truncation.max_length : Infinity;
    this.padId = config.padding ? config.padding.pad_id : 0;
  }

  // texts -> {input_ids, attention_mask}, each {data: number[], shape: [rows, longest]}.
  encodeBatch(texts) {
    const rows = texts.map((text) => this.encode(text));
    const longest = Math.max(...rows.map((ids) => ids.length));
    const ids = [], mask = [];
    for (const row of rows) {
      for (let i = 0; i < longest; i++) {
        ids.push(i < row.length ? row[i] : this.padId);
        mask.push(i < row.length ? 1 : 0);
      }
    }
    const shape = [rows.length, longest];
    return { input_ids: { data: ids, shape }, attention_mask: { data: mask, shape } };
  }

  encode(text) {
    const pieces = [];
    for (const word of preTokenize(normalize(text, this.normalizer))) pieces.push(...this.wordPiece(word));
    const room = this.maxLength - 2;  // [CLS] and [SEP] count towards max_length
    return [this.clsId, ...pieces.slice(0, Math.max(0, room)), this.sepId];
  }

  // Greedy longest-match-first over code points; a word with any unmatched rest is one [UNK].
  wordPiece(word) {
    const chars = Array.from(word);
    if (chars.length > this.maxWordChars) return [this.unkId];
    const ids = [];
    for (let start = 0; start < chars.length;) {
      let end = chars.length, id;
      for (; end > start; end--) {
        const piece = (start > 0 ? this.prefix : "") + chars.slice(start, end).join("");
        id = this.vocab.get(piece);
        if (id !== undefined) break;
      }
      if (end === start) return [this.unkId];
      ids.push(id);
      start = end;
    }
    return ids;
  }
}

function specialIds(post, vocab, refuse) {
  if (post && post.type === "TemplateProcessing") {
    const [first, , last] = post.single;
    if (post.single.length !== 3 || !first.SpecialToken || !last.SpecialToken) refuse("post_processor template", post);
    return [post.special_tokens[first.SpecialToken.id].ids[0], post.special_tokens[last.SpecialToken.id].ids[0]];
  }
  if (post && post.type === "BertProcessing") return [post.cls[1], post.sep[1]];
  return refuse("post_processor", post);
}

const CONTROL = /\p{C}/u, WHITESPACE = /\s/u, MARK = /\p{Mn}/u, PUNCTUATION = /\p{P}/u;
const ASCII_PUNCTUATION = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");

function isChinese(code) {
  return (code >= 0x4e00 && code <= 0x9fff) || (code >= 0x3400 && code <= 0x4dbf) ||
         (code >= 0x20000 && code <= 0x2a6df) || (code >= 0x2a700 && code <= 0x2b73f) ||
         (code >= 0x2b740 && code <= 0x2b81f) || (code >= 0x2b820 && code <= 0x2ceaf) ||
         (code >= 0xf900 && code <= 0xfaff) || (code >= 0x2f800 && code <= 0x2fa1f);
}

// BertNormalizer: clean control characters and whitespace, space out CJK characters, strip accents
// (when lowercasing, unless said otherwise), lowercase.
function normalize(text, options) {
  let out = "";
  for (const char of text) {
    const code = char.codePointAt(0);
    const control = code === 0 || code === 0xfffd || (CONTROL.test(char) && !"\t\n\r".includes(char));
    if (options.clean_text && control) continue;
    else if (options.clean_text && WHITESPACE.test(char)) out += " ";
    else if (options.handle_chinese_chars && isChinese(code)) out += ` ${char} `;
    else out += char;
  }
  const stripAccents = options.strip_accents === null || options.strip_accents === undefined
    ? options.lowercase : options.strip_accents;
  if (stripAccents) out = Array.from(out.normalize("NFD")).filter((c) => !MARK.test(c)).join("");
  return options.lowercase ? out.toLowerCase() : out;
}

// BertPreTokenizer: split on whitespace (dropped) and around every punctuation character (kept alone).
function preTokenize(text) {
  const words = [];
  let word = "";
  for (const char of text) {
    if (WHITESPACE.test(char)) {
      if (word) words.push(word);
      word = "";
    } else if (ASCII_PUNCTUATION.has(char) || PUNCTUATION.test(char)) {
      if (word) words.push(word);
      words.push(char);
      word = "";
    } else {
      word += char;
    }
  }
  if (word) words.push(word);
  return words;
}

self.WordPieceTokenizer = WordPieceTokenizer;
