/* Metadata keys and tensor names of .tern files (docs/format.md, "Models").
 * One place, so the converter that writes them and the runtime that reads
 * them cannot drift apart. */
#ifndef TERN_FORMATS_KEYS_H
#define TERN_FORMATS_KEYS_H

/* general.* */
#define TERN_KEY_ARCH "general.architecture"   /* string: llama | qwen2 | mamba | rwkv4 | vit */
#define TERN_KEY_NAME "general.name"           /* string, optional */
#define TERN_KEY_SOURCE "general.source"       /* string: what it was converted from */
#define TERN_KEY_CONVERTER "general.converter" /* string: "tern 0.1.0" */

/* model.* hyper-parameters (decoders) */
#define TERN_KEY_N_VOCAB "model.n_vocab"       /* u32 */
#define TERN_KEY_N_CTX "model.n_ctx"           /* u32: maximum positions */
#define TERN_KEY_D_MODEL "model.d_model"       /* u32: hidden size */
#define TERN_KEY_N_LAYER "model.n_layer"       /* u32 */
#define TERN_KEY_N_HEAD "model.n_head"         /* u32 */
#define TERN_KEY_N_HEAD_KV "model.n_head_kv"   /* u32 */
#define TERN_KEY_HEAD_DIM "model.head_dim"     /* u32 */
#define TERN_KEY_D_FF "model.d_ff"             /* u32: FFN inner size */
#define TERN_KEY_NORM_EPS "model.norm_eps"     /* f32 */
#define TERN_KEY_ROPE_THETA "model.rope_theta" /* f32 */
#define TERN_KEY_ROPE_LAYOUT "model.rope_layout" /* u32: 0 rotate-half (HF), 1 interleaved pairs */
#define TERN_KEY_BOS "model.bos_token_id"      /* i32, -1: none */
#define TERN_KEY_EOS "model.eos_token_id"      /* i32, -1: none */

/* tokenizer.* (runtime/tokenizer.h): the vocabulary travels inside the model. */
#define TERN_KEY_TOK_MODEL "tokenizer.model"         /* string: "llama" (SentencePiece) | "gpt2" (byte-level BPE) */
#define TERN_KEY_TOK_PRE "tokenizer.pre"             /* string: pre-tokenizer type (GGUF's names), optional */
#define TERN_KEY_TOK_TOKENS "tokenizer.tokens"       /* string array [n_tokens] */
#define TERN_KEY_TOK_SCORES "tokenizer.scores"       /* f32 array [n_tokens], optional */
#define TERN_KEY_TOK_TYPES "tokenizer.token_type"    /* i32 array [n_tokens] (GGUF's token types), optional */
#define TERN_KEY_TOK_MERGES "tokenizer.merges"       /* string array "left right", rank order, optional */
#define TERN_KEY_TOK_BOS "tokenizer.bos_id"          /* i32, -1: none (likewise below) */
#define TERN_KEY_TOK_EOS "tokenizer.eos_id"
#define TERN_KEY_TOK_EOT "tokenizer.eot_id"
#define TERN_KEY_TOK_EOM "tokenizer.eom_id"
#define TERN_KEY_TOK_UNK "tokenizer.unk_id"
#define TERN_KEY_TOK_PAD "tokenizer.pad_id"
#define TERN_KEY_TOK_ADD_BOS "tokenizer.add_bos"     /* u32 0/1 */
#define TERN_KEY_TOK_ADD_EOS "tokenizer.add_eos"     /* u32 0/1 */
#define TERN_KEY_TOK_ADD_SPACE "tokenizer.add_space_prefix" /* u32 0/1 */
#define TERN_KEY_TOK_CHAT "tokenizer.chat_template"  /* string (Jinja source), optional */

/* Tensor names (GGUF's naming; %d is the layer). Weights are [out][in].
 * A bias is the weight's name with ".bias" for ".weight". Absent
 * "output.weight" means the output layer is tied to "token_embd.weight". */
#define TERN_T_TOKEN_EMBD "token_embd.weight"   /* [n_vocab][d_model] */
#define TERN_T_OUTPUT_NORM "output_norm.weight" /* [d_model] */
#define TERN_T_OUTPUT "output.weight"           /* [n_vocab][d_model] */
#define TERN_T_ROPE_FREQS "rope_freqs.weight"   /* [head_dim/2] F32, optional: Llama 3 frequency divisors */
#define TERN_T_ATTN_NORM "blk.%d.attn_norm.weight" /* [d_model] */
#define TERN_T_ATTN_Q "blk.%d.attn_q.weight"    /* [n_head*head_dim][d_model] */
#define TERN_T_ATTN_K "blk.%d.attn_k.weight"    /* [n_head_kv*head_dim][d_model] */
#define TERN_T_ATTN_V "blk.%d.attn_v.weight"    /* [n_head_kv*head_dim][d_model] */
#define TERN_T_ATTN_OUT "blk.%d.attn_output.weight" /* [d_model][n_head*head_dim] */
#define TERN_T_FFN_NORM "blk.%d.ffn_norm.weight" /* [d_model] */
#define TERN_T_FFN_GATE "blk.%d.ffn_gate.weight" /* [d_ff][d_model] */
#define TERN_T_FFN_UP "blk.%d.ffn_up.weight"    /* [d_ff][d_model] */
#define TERN_T_FFN_DOWN "blk.%d.ffn_down.weight" /* [d_model][d_ff] */

#endif
