//! The table `manabi plan` prints ([`Plan`]'s `Display`).

use super::*;

/// `1.10B`, `300.0M`, `20.0k`.
fn count(n: f64) -> String {
    let a = n.abs();
    if a >= 1e12 {
        format!("{:.2}T", n / 1e12)
    } else if a >= 1e9 {
        format!("{:.2}B", n / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// `124,439,808`.
fn commas(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1.23 GiB`, `512.0 MiB`, `84.0 KiB`: the largest binary unit the value reaches.
fn gib(bytes: u64) -> String {
    let b = bytes as f64;
    let (mib, kib) = (GIB / 1024.0, GIB / (1024.0 * 1024.0));
    if b >= GIB {
        format!("{:.2} GiB", b / GIB)
    } else if b >= mib {
        format!("{:.1} MiB", b / mib)
    } else {
        format!("{:.1} KiB", b / kib)
    }
}

/// `42.0 s`, `3.5 min`, `7.2 h`, `18.8 days`, `2.1 years`.
fn duration(s: f64) -> String {
    let (m, h, day) = (60.0, 3600.0, 86_400.0);
    if s < 2.0 * m {
        format!("{s:.1} s")
    } else if s < 2.0 * h {
        format!("{:.1} min", s / m)
    } else if s < 2.0 * day {
        format!("{:.1} h", s / h)
    } else if s < 730.0 * day {
        format!("{:.1} days", s / day)
    } else {
        format!("{:.1} years", s / (365.0 * day))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let layers = match c.family {
            Family::T5 => format!("{} + {} layers", c.n_layers, c.decoder_layers()),
            _ => format!("{} layers", c.n_layers),
        };
        let kv = if c.kv_heads() == c.n_heads {
            String::new()
        } else {
            format!(" ({} kv)", c.kv_heads())
        };
        writeln!(
            f,
            "model    {} · {layers} · d_model {} · {} heads{kv} × {} · d_ff {} · vocab {} · \
             max_positions {}",
            c.hf_model_type.as_deref().unwrap_or(&c.family.to_string()),
            c.d_model,
            c.n_heads,
            c.head_dim(),
            c.d_ff,
            c.vocab_size,
            c.max_positions
        )?;
        let dp = &self.data_parallel;
        let gpus = if dp.gpus == 1 {
            "1 device".to_string()
        } else {
            format!("{} GPUs", dp.gpus)
        };
        writeln!(
            f,
            "budget   {} tokens · batch {} × seq {} = {} tokens/step per device · {gpus} → {} steps",
            count(self.tokens as f64),
            self.batch,
            self.seq_len,
            commas((self.batch * self.seq_len) as u64),
            commas(dp.steps)
        )?;

        let p = &self.params;
        writeln!(f, "\nparameters")?;
        fn row(f: &mut fmt::Formatter<'_>, name: &str, n: u64, note: &str) -> fmt::Result {
            writeln!(
                f,
                "  {name:<16}{:>18}  {:>8}  {note}",
                commas(n),
                count(n as f64)
            )
        }
        row(f, "total", p.total, "")?;
        let untied = if c.tie_embeddings || c.family == Family::Bert {
            ""
        } else {
            " + untied head"
        };
        let positions = if c.positions == Positions::Learned {
            " + positions"
        } else {
            ""
        };
        row(
            f,
            "embedding",
            p.embedding,
            &format!("(tokens{positions}{untied})"),
        )?;
        row(f, "non-embedding", p.non_embedding, "(Kaplan's N)")?;
        let how = match &self.lora {
            Some(l) => format!(
                "(LoRA r={} on {}: {} Linears × r·(in+out))",
                l.rank,
                l.targets.join(","),
                l.adapted_linears
            ),
            None => "(full training)".into(),
        };
        row(f, "trainable", p.trainable, &how)?;

        let fl = &self.flops;
        writeln!(
            f,
            "\ntraining compute (D = {} tokens; forward 2N, backward 4N per token)",
            count(self.tokens as f64)
        )?;
        writeln!(
            f,
            "  6·N·D, N non-embedding (Kaplan)        {:>10.3e} FLOP",
            fl.non_embedding
        )?;
        writeln!(
            f,
            "  6·N·D, N all parameters                {:>10.3e} FLOP",
            fl.all_params
        )?;
        writeln!(
            f,
            "  + attention 6·L·s·d_attn·D             {:>10.3e} FLOP  ({:.3e} FLOP/token)",
            fl.with_attention,
            fl.per_token_all + fl.per_token_attention
        )?;

        let ch = &self.chinchilla;
        let verdict = if ch.budget_ratio > 1.05 {
            "more tokens than compute-optimal"
        } else if ch.budget_ratio < 0.95 {
            "fewer tokens than compute-optimal"
        } else {
            "about compute-optimal"
        };
        writeln!(
            f,
            "\nChinchilla (≈ {} tokens per parameter)",
            ch.tokens_per_param
        )?;
        writeln!(
            f,
            "  optimal tokens for this model          {:>10}",
            count(ch.optimal_tokens)
        )?;
        writeln!(
            f,
            "  budget / optimal                       {:>9.2}×  ({verdict})",
            ch.budget_ratio
        )?;
        writeln!(
            f,
            "  optimal model for this budget          {:>10} parameters",
            count(ch.optimal_params_for_budget)
        )?;

        writeln!(
            f,
            "\nmemory (batch {} × seq {}; AdamW = 2 f32 moments; bf16 adds f32 master weights)",
            self.batch, self.seq_len
        )?;
        writeln!(
            f,
            "  {:<16}{:>11}{:>11}{:>11}{:>11}{:>11}{:>12}{:>11}{:>12}",
            "", "weights", "grads", "AdamW", "master", "act/seq", "act/seq ck", "total", "total ck"
        )?;
        for m in &self.memory {
            writeln!(
                f,
                "  {:<16}{:>11}{:>11}{:>11}{:>11}{:>11}{:>12}{:>11}{:>12}",
                m.label,
                gib(m.weights),
                gib(m.gradients),
                gib(m.optimizer),
                gib(m.master_weights),
                gib(m.activations_per_sequence),
                gib(m.activations_per_sequence_checkpointed),
                gib(m.total),
                gib(m.total_checkpointed)
            )?;
        }
        writeln!(
            f,
            "  (ck = gradient checkpointing; activations after Korthikanti et al. 2022)"
        )?;
        writeln!(
            f,
            "  this run: {}, {} → {}",
            self.run_memory.label,
            if self.checkpointing {
                "checkpointing"
            } else {
                "no checkpointing"
            },
            gib(self.run_bytes)
        )?;

        writeln!(f, "\ntime")?;
        match &self.throughput {
            None => writeln!(
                f,
                "  no throughput: give --tokens-per-second, or --measure on a device"
            )?,
            Some(Throughput::NotMeasured { reason }) => {
                writeln!(f, "  not measured: {reason}")?;
            }
            Some(Throughput::Given { tokens_per_second }) => writeln!(
                f,
                "  throughput {} tokens/s (given)",
                commas(tokens_per_second.round() as u64)
            )?,
            Some(Throughput::Measured {
                tokens_per_second,
                device,
                layers_timed,
                steps,
                seconds_per_layer,
                seconds_fixed,
            }) => writeln!(
                f,
                "  throughput {} tokens/s (measured on {device}: up to {layers_timed} of {} \
                 layers built, {steps} timed steps each, f32 forward + loss + backward; \
                 {:.1} ms per layer + {:.1} ms outside the layers, per step)",
                commas(tokens_per_second.round() as u64),
                c.n_layers,
                seconds_per_layer * 1e3,
                seconds_fixed * 1e3
            )?,
        }
        if let Some(t) = &self.time {
            writeln!(
                f,
                "  {} tokens on one device: {}  ({:.3e} model FLOP/s)",
                count(self.tokens as f64),
                duration(t.seconds),
                t.model_flops_per_second
            )?;
            if let Some(s) = t.seconds_checkpointed {
                writeln!(
                    f,
                    "  with checkpointing (each forward twice, ≈ 4/3): {}",
                    duration(s)
                )?;
            }
        }

        if dp.gpus > 1 {
            writeln!(
                f,
                "\ndata parallel ({} GPUs, all-reduce at {} GB/s)",
                dp.gpus, dp.bandwidth_gb_per_s
            )?;
            writeln!(
                f,
                "  memory per GPU: full replica {}; ZeRO-1 (optimizer state ÷ {}) {}",
                gib(dp.memory_per_gpu),
                dp.gpus,
                gib(dp.memory_per_gpu_zero1)
            )?;
            writeln!(
                f,
                "  all-reduce per step: 2·(N−1)/N × {} params × {} B = {:.3} GB → {:.3} s",
                commas(p.trainable),
                self.dtype.bytes(),
                dp.allreduce_bytes_per_step / 1e9,
                dp.allreduce_seconds_per_step
            )?;
            if let (Some(ideal), Some(real)) = (dp.ideal_seconds, dp.seconds_with_allreduce) {
                writeln!(
                    f,
                    "  time: ideal (÷ {}) {}; with the all-reduce after each step {}",
                    dp.gpus,
                    duration(ideal),
                    duration(real)
                )?;
            }
        }
        Ok(())
    }
}
