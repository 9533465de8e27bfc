// regkit's CPU kernels for fused=True (built at run time by regkit/optim/cpu_kernels.py; float32 and float64).
//
// One pass per step where torch's ops need several: the Adam step (with a decoupled decay factor, constant or
// AdaDecay's per coordinate) also sums the new weights (w, w^2, |w|, huber(w) and shifted sums for the spread),
// which gives every CPR measure; `sums` reads a list once for the same sums (AdaDecay's gradient statistics),
// `squares` two lists side by side (AWD's norms); `descend` takes CPR's constraint step in one pass. Sums are
// taken in the tensor's dtype within blocks of BLOCK values (SIMD lanes) and added up in double.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

// sum w, sum w^2, sum |w|, sum huber(w) (delta 1), sum (y - c), sum (y - c)^2: y = w (or |w| for `magnitudes`),
// c = y of the first element before the step; the shifted sums give an accurate spread of near-constant values
constexpr int COLUMNS = 6;
using Sums = std::array<double, COLUMNS>;
constexpr int64_t GRAIN = 1 << 15;   // values per task of the intra-op thread pool
constexpr int64_t BLOCK = 2048;      // values summed in the tensor's dtype before the double total

Sums add(Sums x, const Sums& y) {
  for (int k = 0; k < COLUMNS; ++k) x[k] += y[k];
  return x;
}

template <typename T>
inline T exp_of(T x) {
  return std::exp(x);
}

// float: exp by Cody-Waite range reduction and a degree-6 polynomial (relative error < 2e-7), so the loop vectorizes.
template <>
inline float exp_of<float>(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float k = std::nearbyint(x * 1.44269504f);
  const float r = x - k * 0.693145752f - k * 1.42860677e-6f;
  const float q = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666418f + r * (0.00833336823f +
                  r * 0.00138873165f)))));
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return q * scale;
}

template <typename T>
inline void add_block(Sums& out, const std::array<T, COLUMNS>& s) {
  for (int k = 0; k < COLUMNS; ++k) out[k] += s[k];
}

// adds one value w to the six sums (shift c); MAGNITUDES: only sum |w| and the shifted sums of y = |w|
template <typename T, bool MAGNITUDES>
inline void accumulate(T w, T c, T& s0, T& s1, T& s2, T& s3, T& s4, T& s5) {
  const T a = std::fabs(w), y = (MAGNITUDES ? a : w) - c;
  s2 += a; s4 += y; s5 += y * y;
  if (!MAGNITUDES) {
    const T d = a < T(1) ? a : T(1);
    s0 += w; s1 += w * w; s3 += d * (a - T(0.5) * d);
  }
}

// Adam's moments of one coordinate, torch's fused arithmetic: m <- m + (1 - beta1)(g - m), v <- beta2 v + (1 - beta2) g^2
template <typename T>
inline void adam_moments(T grad, T& m, T& v, T one_minus_beta1, T beta2, T one_minus_beta2) {
  m = m + one_minus_beta1 * (grad - m);
  v = beta2 * v + one_minus_beta2 * grad * grad;
}

// One Adam step on [begin, end): m, v as torch's fused kernel, then w <- keep_i * w - step * m / (sqrt(v) / bc2 + eps)
// with keep_i = keep - rate * sigmoid(slope * |g| + offset) when ADADECAY (else keep); STATS sums the new w.
template <typename T, bool ADADECAY, bool MAXIMIZE, bool STATS>
void adam_range(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, int64_t begin, int64_t end,
                const std::array<T, 10>& c, T shift, Sums& out) {
  const T one_minus_beta1 = c[0], beta2 = c[1], one_minus_beta2 = c[2], step = c[3], inv_bc2 = c[4], eps = c[5];
  const T keep = c[6], rate = c[7], slope = c[8], offset = c[9];
  for (int64_t start = begin; start < end; start += BLOCK) {
    const int64_t stop = std::min(end, start + BLOCK);
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3, s4, s5)
    for (int64_t i = start; i < stop; ++i) {
      const T grad = MAXIMIZE ? -g[i] : g[i];
      T mi = m[i], vi = v[i];
      adam_moments(grad, mi, vi, one_minus_beta1, beta2, one_minus_beta2);
      m[i] = mi;
      v[i] = vi;
      T keep_i = keep;
      if (ADADECAY) keep_i = keep - rate / (T(1) + exp_of<T>(-(slope * std::fabs(grad) + offset)));
      const T w = p[i] * keep_i - step * mi / (std::sqrt(vi) * inv_bc2 + eps);
      p[i] = w;
      if (STATS) accumulate<T, false>(w, shift, s0, s1, s2, s3, s4, s5);
    }
    if (STATS) add_block<T>(out, {s0, s1, s2, s3, s4, s5});
  }
}

template <typename T, bool ADADECAY>
Sums adam_tensor(T* p, const T* g, T* m, T* v, int64_t n, const std::array<T, 10>& c, bool maximize, bool stats) {
  const T shift = n > 0 ? p[0] : T(0);
  return at::parallel_reduce(0, n, GRAIN, Sums{}, [&](int64_t begin, int64_t end, Sums acc) {
    if (maximize && stats) adam_range<T, ADADECAY, true, true>(p, g, m, v, begin, end, c, shift, acc);
    else if (maximize) adam_range<T, ADADECAY, true, false>(p, g, m, v, begin, end, c, shift, acc);
    else if (stats) adam_range<T, ADADECAY, false, true>(p, g, m, v, begin, end, c, shift, acc);
    else adam_range<T, ADADECAY, false, false>(p, g, m, v, begin, end, c, shift, acc);
    return acc;
  }, add);
}

template <typename T, bool MAGNITUDES>
Sums sums_range(const T* __restrict x, int64_t begin, int64_t end, T shift) {
  Sums out{};
  for (int64_t start = begin; start < end; start += BLOCK) {
    const int64_t stop = std::min(end, start + BLOCK);
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3, s4, s5)
    for (int64_t i = start; i < stop; ++i) accumulate<T, MAGNITUDES>(x[i], shift, s0, s1, s2, s3, s4, s5);
    add_block<T>(out, {s0, s1, s2, s3, s4, s5});
  }
  return out;
}

using Pair = std::array<double, 2>;

template <typename T>
Pair squares_range(const T* __restrict x, const T* __restrict y, int64_t begin, int64_t end) {
  Pair out{};
  for (int64_t start = begin; start < end; start += BLOCK) {
    const int64_t stop = std::min(end, start + BLOCK);
    T sx = 0, sy = 0;
#pragma omp simd reduction(+ : sx, sy)
    for (int64_t i = start; i < stop; ++i) {
      sx += x[i] * x[i];
      sy += y[i] * y[i];
    }
    out[0] += sx;
    out[1] += sy;
  }
  return out;
}

// two comparisons by value, each one SIMD max/min instruction (std::min/max return references and a nested
// conditional becomes compares and blends); a NaN x gives a bound here, and the callers' w - ... stays NaN
template <typename T>
inline T clamp(T x, T low, T high) {
  const T above = x > low ? x : low;
  return above < high ? above : high;
}

template <typename T>
void descend_range(T* __restrict p, int64_t begin, int64_t end, int64_t mode, T a, T b) {
  if (mode == 0) {  // l2: w * (1 - 2 c lambda)
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) p[i] *= a;
  } else if (mode == 1) {  // l1: w - clamp(w, -t, t)
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) p[i] = p[i] - clamp(p[i], -a, a);
  } else if (mode == 2) {  // std: w (1 - c s) + c s mean
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) p[i] = p[i] * a + b;
  } else {  // huber: w - t clamp(w, -1, 1)
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) p[i] = p[i] - a * clamp(p[i], T(-1), T(1));
  }
}

void check_dense(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), what, " must be a contiguous CPU tensor");
}

at::Tensor sums_table(size_t n) { return at::zeros({static_cast<int64_t>(n), COLUMNS}, at::kDouble); }

}  // namespace

// One row of sums of the new weights per tensor when `stats` (shift: the tensor's first weight before the step).
at::Tensor adam_step(std::vector<at::Tensor> params, std::vector<at::Tensor> grads, std::vector<at::Tensor> exp_avgs,
                     std::vector<at::Tensor> exp_avg_sqs, std::vector<double> steps, std::vector<double> bc2_sqrts,
                     double beta1, double beta2, double eps, std::vector<double> keeps, std::vector<double> rates,
                     std::vector<double> slopes, std::vector<double> offsets, bool maximize, bool stats) {
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n && exp_avgs.size() == n && exp_avg_sqs.size() == n && steps.size() == n &&
              bc2_sqrts.size() == n && keeps.size() == n && rates.size() == n && slopes.size() == n &&
              offsets.size() == n, "adam_step: lists of different lengths");
  auto out = sums_table(n);
  auto rows = out.accessor<double, 2>();
  for (size_t t = 0; t < n; ++t) {
    for (const auto* x : {&params[t], &grads[t], &exp_avgs[t], &exp_avg_sqs[t]}) {
      check_dense(*x, "adam_step: every tensor");
      TORCH_CHECK(x->scalar_type() == params[t].scalar_type() && x->numel() == params[t].numel(),
                  "adam_step: a param's grad and state must have its dtype and size");
    }
    AT_DISPATCH_FLOATING_TYPES(params[t].scalar_type(), "adam_step", [&] {
      const std::array<scalar_t, 10> c = {
          static_cast<scalar_t>(1 - beta1), static_cast<scalar_t>(beta2), static_cast<scalar_t>(1 - beta2),
          static_cast<scalar_t>(steps[t]), static_cast<scalar_t>(1 / bc2_sqrts[t]), static_cast<scalar_t>(eps),
          static_cast<scalar_t>(keeps[t]), static_cast<scalar_t>(rates[t]), static_cast<scalar_t>(slopes[t]),
          static_cast<scalar_t>(offsets[t])};
      auto* p = params[t].data_ptr<scalar_t>();
      const auto* g = grads[t].data_ptr<scalar_t>();
      auto* m = exp_avgs[t].data_ptr<scalar_t>();
      auto* v = exp_avg_sqs[t].data_ptr<scalar_t>();
      const int64_t numel = params[t].numel();
      const Sums s = rates[t] != 0 ? adam_tensor<scalar_t, true>(p, g, m, v, numel, c, maximize, stats)
                                   : adam_tensor<scalar_t, false>(p, g, m, v, numel, c, maximize, stats);
      for (int k = 0; k < COLUMNS; ++k) rows[t][k] = s[k];
    });
  }
  return out;
}

// One row of sums per tensor (`magnitudes`: only sum |x| and the shifted sums of |x|, shift |x[0]|; the rest 0).
at::Tensor sums(std::vector<at::Tensor> xs, bool magnitudes) {
  auto out = sums_table(xs.size());
  auto rows = out.accessor<double, 2>();
  for (size_t t = 0; t < xs.size(); ++t) {
    check_dense(xs[t], "sums: every tensor");
    AT_DISPATCH_FLOATING_TYPES(xs[t].scalar_type(), "sums", [&] {
      const auto* x = xs[t].data_ptr<scalar_t>();
      const scalar_t shift = xs[t].numel() == 0 ? scalar_t(0) : magnitudes ? std::fabs(x[0]) : x[0];
      const Sums s = at::parallel_reduce(0, xs[t].numel(), GRAIN, Sums{}, [&](int64_t begin, int64_t end, Sums acc) {
        return add(acc, magnitudes ? sums_range<scalar_t, true>(x, begin, end, shift)
                                   : sums_range<scalar_t, false>(x, begin, end, shift));
      }, add);
      for (int k = 0; k < COLUMNS; ++k) rows[t][k] = s[k];
    });
  }
  return out;
}

// AdamP/SGDP, pass 1 (ADAM: Adam's moments m, v; else SGDP's momentum buffer in m): updates the state and sums,
// per row of length d (rows along dim 0), <g, w>, ||g||^2, ||w||^2 and <w, u> with u the update direction (Adam:
// numerator / (sqrt(v) / bc2 + eps), numerator m or, NESTEROV, lerp(m, g, 1 - beta1); SGDP: b or g + mu b).
// Pass 2 (STEP): w <- factor[row] w - step u, u recomputed from the state written by pass 1.
template <typename T, bool ADAM, bool NESTEROV, bool STEP>
void projection_rows(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, int64_t rows,
                     int64_t d, const std::array<T, 9>& c, double* __restrict out, const double* __restrict factors) {
  const T one_minus_beta1 = c[0], beta2 = c[1], one_minus_beta2 = c[2], inv_bc2 = c[3], eps = c[4];
  const T momentum = c[5], one_minus_dampening = c[6], step = c[7];
  at::parallel_for(0, rows, std::max<int64_t>(1, GRAIN / std::max<int64_t>(d, 1)), [&](int64_t first, int64_t last) {
    for (int64_t row = first; row < last; ++row) {
      const T factor = STEP ? static_cast<T>(factors[row]) : T(1);
      double sums[4] = {0, 0, 0, 0};
      for (int64_t start = row * d; start < (row + 1) * d; start += BLOCK) {
        const int64_t stop = std::min((row + 1) * d, start + BLOCK);
        T gw = 0, gg = 0, ww = 0, wu = 0;
#pragma omp simd reduction(+ : gw, gg, ww, wu)
        for (int64_t i = start; i < stop; ++i) {
          const T grad = g[i], w = p[i];
          T u;
          if (ADAM) {
            T mi = m[i], vi = v[i];
            if (!STEP) {
              adam_moments(grad, mi, vi, one_minus_beta1, beta2, one_minus_beta2);
              m[i] = mi;
              v[i] = vi;
            }
            const T numerator = NESTEROV ? mi + one_minus_beta1 * (grad - mi) : mi;
            u = numerator / (std::sqrt(vi) * inv_bc2 + eps);
          } else {
            T bi = m[i];
            if (!STEP) {
              bi = momentum * bi + one_minus_dampening * grad;
              m[i] = bi;
            }
            u = NESTEROV ? grad + momentum * bi : bi;
          }
          if (STEP) {
            p[i] = w * factor - step * u;
          } else {
            gw += grad * w; gg += grad * grad; ww += w * w; wu += w * u;
          }
        }
        sums[0] += gw; sums[1] += gg; sums[2] += ww; sums[3] += wu;
      }
      if (!STEP)
        for (int k = 0; k < 4; ++k) out[k * rows + row] = sums[k];
    }
  });
}

template <typename T, bool STEP>
void projection_tensor(bool adam, bool nesterov, T* p, const T* g, T* m, T* v, int64_t rows, int64_t d,
                       const std::array<T, 9>& c, double* out, const double* factors) {
  if (adam && nesterov) projection_rows<T, true, true, STEP>(p, g, m, v, rows, d, c, out, factors);
  else if (adam) projection_rows<T, true, false, STEP>(p, g, m, v, rows, d, c, out, factors);
  else if (nesterov) projection_rows<T, false, true, STEP>(p, g, m, v, rows, d, c, out, factors);
  else projection_rows<T, false, false, STEP>(p, g, m, v, rows, d, c, out, factors);
}

// sum x^2 and sum y^2 of each pair (x, y) of tensors of one size, read side by side (AWD's ||w|| and ||g||).
at::Tensor squares(std::vector<at::Tensor> xs, std::vector<at::Tensor> ys) {
  TORCH_CHECK(xs.size() == ys.size(), "squares: lists of different lengths");
  auto out = at::zeros({static_cast<int64_t>(xs.size()), 2}, at::kDouble);
  auto rows = out.accessor<double, 2>();
  for (size_t t = 0; t < xs.size(); ++t) {
    check_dense(xs[t], "squares: every tensor");
    check_dense(ys[t], "squares: every tensor");
    TORCH_CHECK(xs[t].scalar_type() == ys[t].scalar_type() && xs[t].numel() == ys[t].numel(),
                "squares: each pair must have one dtype and size");
    AT_DISPATCH_FLOATING_TYPES(xs[t].scalar_type(), "squares", [&] {
      const auto* x = xs[t].data_ptr<scalar_t>();
      const auto* y = ys[t].data_ptr<scalar_t>();
      const Pair s = at::parallel_reduce(0, xs[t].numel(), GRAIN, Pair{}, [&](int64_t begin, int64_t end, Pair acc) {
        const Pair part = squares_range(x, y, begin, end);
        return Pair{acc[0] + part[0], acc[1] + part[1]};
      }, [](Pair a, const Pair& b) { return Pair{a[0] + b[0], a[1] + b[1]}; });
      rows[t][0] = s[0];
      rows[t][1] = s[1];
    });
  }
  return out;
}

// CPR's constraint step, in place: mode 0 (l2) w *= a; 1 (l1) w -= clamp(w, -a, a); 2 (std) w = a w + b;
// 3 (huber) w -= a clamp(w, -1, 1). One (a, b) per tensor.
void descend(std::vector<at::Tensor> params, int64_t mode, std::vector<double> a, std::vector<double> b) {
  TORCH_CHECK(a.size() == params.size() && b.size() == params.size(), "descend: lists of different lengths");
  TORCH_CHECK(mode >= 0 && mode <= 3, "descend: mode must be 0-3");
  for (size_t t = 0; t < params.size(); ++t) {
    check_dense(params[t], "descend: every tensor");
    AT_DISPATCH_FLOATING_TYPES(params[t].scalar_type(), "descend", [&] {
      auto* p = params[t].data_ptr<scalar_t>();
      const auto x = static_cast<scalar_t>(a[t]), y = static_cast<scalar_t>(b[t]);
      at::parallel_for(0, params[t].numel(), GRAIN, [&](int64_t begin, int64_t end) {
        descend_range(p, begin, end, mode, x, y);
      });
    });
  }
}

// AdamP/SGDP's two passes over each tensor (see projection_rows): `factors` empty for pass 1, which returns
// one (4, rows) float64 table per tensor; pass 2 takes one float64 tensor of row factors per tensor.
// `v` empty for SGDP (m holds its momentum buffer). Rows: slices along dim 0 (one row for a 0-d/1-d tensor).
std::vector<at::Tensor> projection_step(std::vector<at::Tensor> params, std::vector<at::Tensor> grads,
                                        std::vector<at::Tensor> exp_avgs, std::vector<at::Tensor> exp_avg_sqs,
                                        std::vector<double> steps, std::vector<double> bc2_sqrts, double beta1,
                                        double beta2, double eps, double momentum, double dampening, bool nesterov,
                                        std::vector<at::Tensor> factors) {
  const bool adam = !exp_avg_sqs.empty(), step = !factors.empty();
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n && exp_avgs.size() == n && steps.size() == n && bc2_sqrts.size() == n &&
              (!adam || exp_avg_sqs.size() == n) && (!step || factors.size() == n),
              "projection_step: lists of different lengths");
  std::vector<at::Tensor> tables;
  for (size_t t = 0; t < n; ++t) {
    for (const auto* x : {&params[t], &grads[t], &exp_avgs[t]}) {
      check_dense(*x, "projection_step: every tensor");
      TORCH_CHECK(x->scalar_type() == params[t].scalar_type() && x->numel() == params[t].numel(),
                  "projection_step: a param's grad and state must have its dtype and size");
    }
    if (adam) check_dense(exp_avg_sqs[t], "projection_step: every tensor");
    const int64_t rows = params[t].dim() > 1 ? params[t].size(0) : 1;
    const int64_t d = rows > 0 ? params[t].numel() / rows : 0;
    at::Tensor table = at::zeros({4, rows}, at::kDouble);
    const double* row_factors = nullptr;
    if (step) {
      TORCH_CHECK(factors[t].scalar_type() == at::kDouble && factors[t].is_contiguous() && factors[t].numel() == rows,
                  "projection_step: one float64 factor per row");
      row_factors = factors[t].data_ptr<double>();
    }
    AT_DISPATCH_FLOATING_TYPES(params[t].scalar_type(), "projection_step", [&] {
      const std::array<scalar_t, 9> c = {
          static_cast<scalar_t>(1 - beta1), static_cast<scalar_t>(beta2), static_cast<scalar_t>(1 - beta2),
          static_cast<scalar_t>(1 / bc2_sqrts[t]), static_cast<scalar_t>(eps), static_cast<scalar_t>(momentum),
          static_cast<scalar_t>(1 - dampening), static_cast<scalar_t>(steps[t]), scalar_t(0)};
      auto* v = adam ? exp_avg_sqs[t].data_ptr<scalar_t>() : nullptr;
      if (step)
        projection_tensor<scalar_t, true>(adam, nesterov, params[t].data_ptr<scalar_t>(), grads[t].data_ptr<scalar_t>(),
            exp_avgs[t].data_ptr<scalar_t>(), v, rows, d, c, nullptr, row_factors);
      else
        projection_tensor<scalar_t, false>(adam, nesterov, params[t].data_ptr<scalar_t>(),
            grads[t].data_ptr<scalar_t>(), exp_avgs[t].data_ptr<scalar_t>(), v, rows, d, c,
            table.data_ptr<double>(), nullptr);
    });
    tables.push_back(table);
  }
  return tables;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("adam_step", &adam_step, "Adam step with a decay factor, summing the new weights");
  m.def("sums", &sums, "sum x, sum x^2, sum |x|, sum huber(x), and the shifted sums per tensor");
  m.def("squares", &squares, "sum x^2 and sum y^2 of each pair of tensors");
  m.def("projection_step", &projection_step, "AdamP/SGDP: moments and row statistics, or the projected step");
  m.def("descend", &descend, "CPR's constraint step per tensor");
}
