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

/* Mamba-1 (general.architecture "mamba"; runtime/mamba.c). It also uses
 * model.n_vocab, n_ctx (a bound on the position counter only: the state does
 * not grow), d_model, n_layer, norm_eps (RMSNorm), bos/eos_token_id, and
 * token_embd / output_norm / output (absent: tied) as above. */
#define TERN_KEY_SSM_D_INNER "model.ssm.d_inner" /* u32: expand * d_model */
#define TERN_KEY_SSM_D_STATE "model.ssm.d_state" /* u32: N, state size per channel */
#define TERN_KEY_SSM_D_CONV "model.ssm.d_conv"   /* u32: causal conv1d kernel width */
#define TERN_KEY_SSM_DT_RANK "model.ssm.dt_rank" /* u32: rank of the time-step projection */
#define TERN_T_SSM_NORM "blk.%d.attn_norm.weight"  /* [d_model] (GGUF's name for the block norm) */
#define TERN_T_SSM_IN "blk.%d.ssm_in.weight"       /* [2*d_inner][d_model]: x rows, then z rows; bias optional */
#define TERN_T_SSM_CONV "blk.%d.ssm_conv1d.weight" /* [d_inner][d_conv] F32, oldest tap first; bias optional */
#define TERN_T_SSM_X "blk.%d.ssm_x.weight"         /* [dt_rank+2*d_state][d_inner]: dt, B, C rows */
#define TERN_T_SSM_DT "blk.%d.ssm_dt.weight"       /* [d_inner][dt_rank]; bias [d_inner] required */
#define TERN_T_SSM_A "blk.%d.ssm_a"                /* [d_inner][d_state] F32: A = -exp(A_log) */
#define TERN_T_SSM_D "blk.%d.ssm_d"                /* [d_inner] F32: skip connection */
#define TERN_T_SSM_OUT "blk.%d.ssm_out.weight"     /* [d_model][d_inner]; bias optional */

/* RWKV-4 (general.architecture "rwkv4"; runtime/rwkv.c). It also uses
 * model.n_vocab, n_ctx (a bound on the position counter only), d_model,
 * n_layer, d_ff (channel-mix width), norm_eps (block LayerNorms),
 * bos/eos_token_id, and token_embd / output (absent: tied) as above. Every
 * LayerNorm has a weight and a ".bias" [d_model], both required. Vectors
 * are F32. RWKV-5/6/7 would be new architectures with their own blocks. */
#define TERN_KEY_RWKV_D_ATT "model.rwkv.d_att"          /* u32: time-mix width (attention_hidden_size) */
#define TERN_KEY_RWKV_RESCALE "model.rwkv.rescale_every" /* u32: 0, or halve the residual every N blocks */
#define TERN_KEY_RWKV_OUT_EPS "model.rwkv.output_norm_eps" /* f32: epsilon of output_norm, optional (norm_eps) */
#define TERN_T_RWKV_PRE_NORM "token_embd_norm.weight"    /* [d_model]: pre_ln of block 0 */
#define TERN_T_RWKV_OUT_NORM "output_norm.weight"        /* [d_model] (ln_out), with bias */
#define TERN_T_RWKV_ATT_NORM "blk.%d.attn_norm.weight"   /* [d_model] (ln1), with bias */
#define TERN_T_RWKV_FFN_NORM "blk.%d.attn_norm_2.weight" /* [d_model] (ln2), with bias */
#define TERN_T_RWKV_ATT_MIX_K "blk.%d.time_mix_lerp_k.weight" /* [d_model] time_mix_key */
#define TERN_T_RWKV_ATT_MIX_V "blk.%d.time_mix_lerp_v.weight" /* [d_model] time_mix_value */
#define TERN_T_RWKV_ATT_MIX_R "blk.%d.time_mix_lerp_r.weight" /* [d_model] time_mix_receptance */
#define TERN_T_RWKV_DECAY "blk.%d.time_mix_decay"        /* [d_att]: w = -exp(time_decay), not the raw decay */
#define TERN_T_RWKV_FIRST "blk.%d.time_mix_first.weight" /* [d_att]: u = time_first */
#define TERN_T_RWKV_ATT_K "blk.%d.time_mix_key.weight"   /* [d_att][d_model] */
#define TERN_T_RWKV_ATT_V "blk.%d.time_mix_value.weight" /* [d_att][d_model] */
#define TERN_T_RWKV_ATT_R "blk.%d.time_mix_receptance.weight" /* [d_att][d_model] */
#define TERN_T_RWKV_ATT_OUT "blk.%d.time_mix_output.weight"   /* [d_model][d_att] */
#define TERN_T_RWKV_FFN_MIX_K "blk.%d.channel_mix_lerp_k.weight" /* [d_model] */
#define TERN_T_RWKV_FFN_MIX_R "blk.%d.channel_mix_lerp_r.weight" /* [d_model] */
#define TERN_T_RWKV_FFN_K "blk.%d.channel_mix_key.weight" /* [d_ff][d_model] */
#define TERN_T_RWKV_FFN_R "blk.%d.channel_mix_receptance.weight" /* [d_model][d_model] */
#define TERN_T_RWKV_FFN_V "blk.%d.channel_mix_value.weight" /* [d_model][d_ff] */

/* ViT (general.architecture "vit"; runtime/vit.c): Hugging Face
 * ViTForImageClassification and timm vit_*. It also uses model.n_vocab (the
 * number of classes), d_model, n_layer, n_head, head_dim, d_ff, norm_eps
 * (every LayerNorm), and as above blk.%d.attn_norm / attn_q / attn_k / attn_v
 * / attn_output / ffn_norm / ffn_up / ffn_down, output_norm (final LayerNorm)
 * and output (the classifier on the CLS token). Every LayerNorm and linear
 * layer has a ".bias" [rows]; only attn_q/k/v's are optional. timm's fused
 * qkv is split into attn_q/k/v by the converter. */
#define TERN_KEY_VIT_CHANNELS "vision.channels"       /* u32: input channels (3) */
#define TERN_KEY_VIT_HEIGHT "vision.image_height"     /* u32: model input height */
#define TERN_KEY_VIT_WIDTH "vision.image_width"       /* u32: model input width */
#define TERN_KEY_VIT_PATCH "vision.patch_size"        /* u32: square patches */
#define TERN_KEY_VIT_RESIZE "vision.resize_short"     /* u32: short side before the centre crop; 0: resize straight to height x width */
#define TERN_KEY_VIT_INTERP "vision.interpolation"    /* string: bilinear | bicubic (PIL's) */
#define TERN_KEY_VIT_MEAN "vision.image_mean"         /* f32 array [channels], on the [0, 1] scale */
#define TERN_KEY_VIT_STD "vision.image_std"           /* f32 array [channels] */
#define TERN_KEY_VIT_LABELS "vision.labels"           /* string array [n_vocab], optional */
#define TERN_T_VIT_PATCH "patch_embd.weight"          /* [d_model][channels*patch*patch]: conv kernel flattened (channel, row, column); bias */
#define TERN_T_VIT_CLS "cls_embd"                     /* [d_model] F32: the CLS token */
#define TERN_T_VIT_POS "position_embd.weight"         /* [1 + n_patches][d_model] F32: CLS first, then patches row by row */

#endif
