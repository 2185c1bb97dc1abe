// The recurrence of actstudy's custom cells, forward over all T steps and backward through time, in one
// native call per layer and direction (actstudy/native/__init__.py builds and loads it; actstudy/bptt.py
// wraps each pair of functions in an autograd Function).
//
// Why native: the per-step work is one matrix product (torch's BLAS, through at::addmm) and a handful of
// pointwise operations on a (batch, hidden) tile. From Python every pointwise operation is a separate
// dispatch plus a pass over memory; here they are one loop per row that stays in cache, and the time loop
// itself costs nothing.
//
// Each slot's activation is chosen at run time by a code (the order of ACTIVATION_CODES in __init__.py);
// its derivative is taken from its output where that is exact (sigmoid, tanh, ...) and from its input
// otherwise (leaky_relu, gelu, silu, softplus), in which case the forward keeps the pre-activations.
//
// Every function starts from zero state and takes the inputs of all steps, W_ih and the input-side bias
// (project_into says why it projects them itself); its backward hands back the gradient of the
// pre-activations, from which bptt.py takes those of W_ih and the inputs in one matmul each, and of the
// bias, summed here row by row.

#include <torch/extension.h>

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

// The BLAS torch itself links (MKL in the x86 wheels) exports the Fortran gemm entry points. Calling them
// directly skips the dispatcher and the tensor bookkeeping of at::addmm, which cost as much as the matmul
// itself at hidden 32; declared weak so that a torch without them falls back to at::addmm_out.
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
}

namespace {

using at::Tensor;

template <typename T>
struct Fortran;
template <>
struct Fortran<float> {
  static constexpr auto gemm = &sgemm_;
};
template <>
struct Fortran<double> {
  static constexpr auto gemm = &dgemm_;
};

// Row-major C (m x n, row stride ldc) = op(A) op(B) + beta C, op(A) (m x k) = A or A^T as `ta` says, op(B)
// (k x n) likewise; lda and ldb are the row strides of A and B as stored.
template <typename T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
          T beta, T* c, int64_t ldc) {
  auto fortran = Fortran<T>::gemm;
  if (fortran != nullptr) {
    // Row-major C = A B is column-major C^T = B^T A^T: swap the operands, keep the flags.
    const char tb_c = tb ? 'T' : 'N', ta_c = ta ? 'T' : 'N';
    const int mi = static_cast<int>(n), ni = static_cast<int>(m), ki = static_cast<int>(k);
    const int ldbi = static_cast<int>(ldb), ldai = static_cast<int>(lda), ldci = static_cast<int>(ldc);
    const T one = T(1);
    fortran(&tb_c, &ta_c, &mi, &ni, &ki, &one, b, &ldbi, a, &ldai, &beta, c, &ldci);
    return;
  }
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto view = [&](const T* data, bool transposed, int64_t rows, int64_t cols, int64_t ld) {
    // (rows x cols) as used; stored transposed it is (cols x rows) with row stride ld.
    if (transposed) return at::from_blob(const_cast<T*>(data), {cols, rows}, {ld, 1}, options).t();
    return at::from_blob(const_cast<T*>(data), {rows, cols}, {ld, 1}, options);
  };
  Tensor out = at::from_blob(c, {m, n}, {ldc, 1}, options);
  at::addmm_out(out, out, view(a, ta, m, k, lda), view(b, tb, k, n, ldb), beta, 1);
}

// Keep in the order of ACTIVATION_CODES (actstudy/native/__init__.py).
enum Code : int64_t {
  SIGMOID = 0,
  HARD_SIGMOID,
  TANH,
  HARDTANH,
  RELU,
  LEAKY_RELU,
  ELU,
  SELU,
  GELU,
  SILU,
  SOFTSIGN,
  SOFTPLUS,
  IDENTITY,
  CODE_COUNT
};

// torch.nn.SELU's constants and torch's softplus threshold (above it softplus is exactly x).
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSoftplusThreshold = 20.0;
constexpr double kInvSqrt2 = 0.70710678118654752440084436210485;
constexpr double kInvSqrt2Pi = 0.39894228040143267793994605993438;

struct Slot {
  int64_t code;
  double negative_slope;  // leaky_relu only
};

// With a positive slope leaky_relu keeps the sign of its input, so its derivative is read from the output
// and the (T, B, G*H) pre-activations need not be kept: at 128/400/128 that is 105 MB less to write and read.
bool needs_input(const Slot& slot) {
  if (slot.code == LEAKY_RELU) return slot.negative_slope <= 0.0;
  return slot.code == GELU || slot.code == SILU || slot.code == SOFTPLUS;
}

// y = activation(x) over n contiguous values; y may be x.
template <typename T>
void activate(const Slot& slot, const T* x, T* y, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  const T s = static_cast<T>(slot.negative_slope);
  switch (slot.code) {
    case SIGMOID:
      at::vec::map([](Vec v) { return (Vec(T(1)) + v.neg().exp()).reciprocal(); }, y, x, n);
      return;
    case TANH:
      if constexpr (std::is_same_v<T, float>) {
        // Sleef's vector tanh took as long as the rest of the LSTM's pointwise work together (perf, 64/100/64):
        // 1 - 2 / (e^2|x| + 1) costs one exp, within ~1.2e-7 of tanh for |x| >= 1/4, and the Taylor series to
        // x^11 below 1/4, where that form would cancel (its next term is under 1e-10 there). Float64 keeps
        // Sleef's tanh: the float64 tests pin this loop to autograd at 1e-12.
        at::vec::map([](Vec v) {
          const Vec a = v.abs();
          const Vec far = Vec(1.0f) - Vec(2.0f) / ((a + a).exp() + Vec(1.0f));
          const Vec a2 = a * a;
          Vec series = Vec(-1382.0f / 155925);
          series = series * a2 + Vec(62.0f / 2835);
          series = series * a2 + Vec(-17.0f / 315);
          series = series * a2 + Vec(2.0f / 15);
          series = series * a2 + Vec(-1.0f / 3);
          const Vec near = a + a * a2 * series;
          const Vec magnitude = Vec::blendv(far, near, a < Vec(0.25f));
          return Vec::blendv(magnitude, magnitude.neg(), v < Vec(0.0f));
        }, y, x, n);
      } else {
        at::vec::map([](Vec v) { return v.tanh(); }, y, x, n);
      }
      return;
    case HARD_SIGMOID:  // torch's form: min(max(x + 3, 0), 6) / 6
      for (int64_t j = 0; j < n; ++j) y[j] = std::min(std::max(x[j] + T(3), T(0)), T(6)) / T(6);
      return;
    case HARDTANH:
      for (int64_t j = 0; j < n; ++j) y[j] = std::min(std::max(x[j], T(-1)), T(1));
      return;
    case RELU:
      for (int64_t j = 0; j < n; ++j) y[j] = x[j] > T(0) ? x[j] : T(0);
      return;
    case LEAKY_RELU:
      for (int64_t j = 0; j < n; ++j) y[j] = x[j] > T(0) ? x[j] : x[j] * s;
      return;
    case ELU:
      for (int64_t j = 0; j < n; ++j) y[j] = x[j] > T(0) ? x[j] : std::expm1(x[j]);
      return;
    case SELU:
      for (int64_t j = 0; j < n; ++j)
        y[j] = T(kSeluScale) * (x[j] > T(0) ? x[j] : T(kSeluAlpha) * std::expm1(x[j]));
      return;
    case GELU:
      for (int64_t j = 0; j < n; ++j) y[j] = x[j] * T(0.5) * (T(1) + std::erf(x[j] * T(kInvSqrt2)));
      return;
    case SILU:
      for (int64_t j = 0; j < n; ++j) y[j] = x[j] / (T(1) + std::exp(-x[j]));
      return;
    case SOFTSIGN:
      for (int64_t j = 0; j < n; ++j) y[j] = x[j] / (T(1) + std::abs(x[j]));
      return;
    case SOFTPLUS:
      for (int64_t j = 0; j < n; ++j)
        y[j] = x[j] > T(kSoftplusThreshold) ? x[j] : std::log1p(std::exp(x[j]));
      return;
    case IDENTITY:
      if (y != x) std::copy(x, x + n, y);
      return;
    default:
      TORCH_CHECK(false, "unknown activation code ", slot.code);
  }
}

// d = activation'(x) from the input x or the output y (whichever needs_input says); x may be null when
// the derivative is written in terms of the output.
template <typename T>
void slope_of(const Slot& slot, const T* x, const T* y, T* d, int64_t n) {
  const T s = static_cast<T>(slot.negative_slope);
  switch (slot.code) {
    case SIGMOID:
      for (int64_t j = 0; j < n; ++j) d[j] = y[j] * (T(1) - y[j]);
      return;
    case HARD_SIGMOID:  // 1/6 where the output is strictly inside (0, 1)
      for (int64_t j = 0; j < n; ++j) d[j] = (y[j] > T(0) && y[j] < T(1)) ? T(1) / T(6) : T(0);
      return;
    case TANH:
      for (int64_t j = 0; j < n; ++j) d[j] = T(1) - y[j] * y[j];
      return;
    case HARDTANH:
      for (int64_t j = 0; j < n; ++j) d[j] = std::abs(y[j]) < T(1) ? T(1) : T(0);
      return;
    case RELU:
      for (int64_t j = 0; j < n; ++j) d[j] = y[j] > T(0) ? T(1) : T(0);
      return;
    case LEAKY_RELU:  // from y when the slope is positive (y > 0 exactly when x > 0), else from x
      if (x == nullptr) {
        for (int64_t j = 0; j < n; ++j) d[j] = y[j] > T(0) ? T(1) : s;
      } else {
        for (int64_t j = 0; j < n; ++j) d[j] = x[j] > T(0) ? T(1) : s;
      }
      return;
    case ELU:  // for x <= 0, y = e^x - 1, so the slope e^x is y + 1
      for (int64_t j = 0; j < n; ++j) d[j] = y[j] > T(0) ? T(1) : y[j] + T(1);
      return;
    case SELU:
      for (int64_t j = 0; j < n; ++j)
        d[j] = y[j] > T(0) ? T(kSeluScale) : y[j] + T(kSeluScale * kSeluAlpha);
      return;
    case GELU:
      for (int64_t j = 0; j < n; ++j) {
        const T cdf = T(0.5) * (T(1) + std::erf(x[j] * T(kInvSqrt2)));
        d[j] = cdf + x[j] * std::exp(T(-0.5) * x[j] * x[j]) * T(kInvSqrt2Pi);
      }
      return;
    case SILU:
      for (int64_t j = 0; j < n; ++j) {
        const T sig = T(1) / (T(1) + std::exp(-x[j]));
        d[j] = sig * (T(1) + x[j] * (T(1) - sig));
      }
      return;
    case SOFTSIGN:
      for (int64_t j = 0; j < n; ++j) d[j] = (T(1) - std::abs(y[j])) * (T(1) - std::abs(y[j]));
      return;
    case SOFTPLUS:
      for (int64_t j = 0; j < n; ++j)
        d[j] = x[j] > T(kSoftplusThreshold) ? T(1) : T(1) / (T(1) + std::exp(-x[j]));
      return;
    case IDENTITY:
      std::fill(d, d + n, T(1));
      return;
    default:
      TORCH_CHECK(false, "unknown activation code ", slot.code);
  }
}

std::vector<Slot> slots_of(const std::vector<int64_t>& codes, const std::vector<double>& slopes) {
  TORCH_CHECK(codes.size() == slopes.size(), "one negative slope per activation code");
  std::vector<Slot> slots;
  for (size_t k = 0; k < codes.size(); ++k) {
    TORCH_CHECK(codes[k] >= 0 && codes[k] < CODE_COUNT, "unknown activation code ", codes[k]);
    slots.push_back({codes[k], slopes[k]});
  }
  return slots;
}

// Every cell takes its inputs (T, B, I) and projects them itself (project_into says why).
void check_inputs(const Tensor& inputs, const Tensor& weight_ih, const Tensor& bias, const Tensor& weight_hh) {
  TORCH_CHECK(inputs.dim() == 3 && inputs.size(0) > 0 && inputs.size(2) > 0, "inputs must be (T>0, B, I>0)");
  TORCH_CHECK(inputs.device().is_cpu(), "the compiled loop runs on the CPU");
  TORCH_CHECK(weight_hh.dim() == 2 && weight_hh.size(0) % weight_hh.size(1) == 0,
              "weight_hh must be (G*H, H)");
  TORCH_CHECK(weight_ih.dim() == 2 && weight_ih.size(0) == weight_hh.size(0) && weight_ih.size(1) == inputs.size(2),
              "weight_ih must be (G*H, I) with I the inputs' features");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == weight_hh.size(0), "bias must be (G*H)");
  TORCH_CHECK(weight_ih.scalar_type() == inputs.scalar_type() && bias.scalar_type() == inputs.scalar_type() &&
                  weight_hh.scalar_type() == inputs.scalar_type(),
              "inputs, weights and bias differ in dtype");
}

// buffer (T, B, G*H) = x W_ih^T for every step in one matmul, straight into the buffer each cell builds its
// pre-activations in (its activation buffer, activated in place, or its kept pre-activations); the biases
// and the recurrent term are added step by step. Taking the projection from outside instead cost a
// (T, B, G*H) tensor, the broadcast of the bias into it and a copy of it here, ~10% of an LSTM's step.
template <typename T>
void project_into(const Tensor& inputs, const Tensor& weight_ih, T* buffer) {
  const int64_t rows = inputs.size(0) * inputs.size(1), features = inputs.size(2), width = weight_ih.size(0);
  gemm<T>(false, true, rows, width, features, inputs.data_ptr<T>(), features, weight_ih.data_ptr<T>(), features,
          T(0), buffer, width);
}

// dL/dh_t as autograd hands it over: (T, B, H) with unit stride along H, but often a view (the transpose of
// a batch-first output, a slice of a bidirectional or stacked one). Read in place through its strides, so
// that no (T, B, H) copy joins the backward's peak memory.
template <typename T>
struct StepRows {
  const T* data;
  int64_t per_step, per_row;  // strides of t and b, in elements
  StepRows(const Tensor& grad) : data(grad.data_ptr<T>()), per_step(grad.stride(0)), per_row(grad.stride(1)) {}
  const T* row(int64_t t, int64_t b) const { return data + t * per_step + b * per_row; }
  void copy_step(int64_t t, int64_t batch, int64_t H, T* out) const {  // (B, H) of step t, packed
    for (int64_t b = 0; b < batch; ++b) std::copy(row(t, b), row(t, b) + H, out + b * H);
  }
};

Tensor with_unit_stride(const Tensor& grad) {
  return grad.stride(2) == 1 ? grad : grad.contiguous();
}

// dL/dW_hh = sum_t dpre_t^T h_{t-1} (G*H, H), one matmul over every step's rows (h_0 = 0 adds nothing). Taken
// as (H, G*H) = h^T dpre and transposed: the BLAS ran the (G*H, N) by (N, H) order 1.5x slower at
// 128/400/128 (59 against 38 ms on one core here) and 7% slower at 64/200/128, for the same arithmetic.
Tensor grad_recurrent_weight(const Tensor& grad_pre, const Tensor& hs, const Tensor& weight_hh) {
  const int64_t steps = hs.size(0), H = hs.size(2), width = grad_pre.size(2);
  if (steps < 2) return at::zeros_like(weight_hh);
  const Tensor h_rows = hs.narrow(0, 0, steps - 1).reshape({-1, H});              // ((T-1)*B, H)
  const Tensor grad_rows = grad_pre.narrow(0, 1, steps - 1).reshape({-1, width});  // ((T-1)*B, G*H)
  return at::mm(h_rows.t(), grad_rows).t().contiguous();
}

// ------------------------------------------------------------------------------------------------ LSTM
//
// One layout for the plain LSTM and every Greff et al. variant: `blocks` gives the block index of i, f,
// g, o in the (G*H) pre-activation (-1: the gate is absent, i.e. fixed at 1), `peeps` the row of the
// (P, H) peephole matrix for i, f, o (-1: none), `coupled` sets f = 1 - i, and a defined `recurrence`
// (3H, 3H) adds R [i, f, o]_{t-1} to the i, f, o pre-activations (full gate recurrence).

struct LSTMLayout {
  int64_t bi, bf, bg, bo;  // block index of i, f, g, o, or -1
  int64_t pi, pf, po;      // peephole row of i, f, o, or -1
  bool coupled;
  bool recurrent_gates;
};

LSTMLayout lstm_layout(const std::vector<int64_t>& blocks, const std::vector<int64_t>& peeps, bool coupled,
                       const Tensor& recurrence) {
  TORCH_CHECK(blocks.size() == 4 && peeps.size() == 3, "blocks are (i, f, g, o), peepholes (i, f, o)");
  TORCH_CHECK(blocks[2] >= 0, "the LSTM always has a candidate block");
  return {blocks[0], blocks[1], blocks[2], blocks[3], peeps[0], peeps[1], peeps[2], coupled,
          recurrence.defined() && recurrence.numel() > 0};
}

// buf (B, 3H) = the i, f, o blocks of `rows` (B, G*H): the gate values (or their gradients) that the gate
// recurrence reads, side by side.
template <typename T>
void gather_gates(const T* rows, const LSTMLayout& L, int64_t batch, int64_t H, int64_t width, T* buf) {
  const int64_t gates[3] = {L.bi, L.bf, L.bo};
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < 3; ++r)
      std::copy(rows + b * width + gates[r] * H, rows + b * width + (gates[r] + 1) * H, buf + (b * 3 + r) * H);
}

// c_t = f c_{t-1} + i g for one row, with the gates a layout lacks fixed at 1 (f = 1 - i when coupled) as
// template arguments, so that the loop has no test in it and vectorises. cp: zeros at t = 0.
template <typename T, bool HasI, bool HasF, bool Coupled>
void cell_row(int64_t H, const T* __restrict i, const T* __restrict f, const T* __restrict g,
              const T* __restrict cp, T* __restrict c) {
  for (int64_t j = 0; j < H; ++j) {
    const T ij = HasI ? i[j] : T(1);
    const T fj = HasF ? f[j] : (Coupled ? T(1) - ij : T(1));
    c[j] = fj * cp[j] + ij * g[j];
  }
}

template <typename T>
using CellRow = void (*)(int64_t, const T*, const T*, const T*, const T*, T*);

template <typename T>
CellRow<T> cell_row_for(const LSTMLayout& L) {
  const bool has_i = L.bi >= 0, has_f = L.bf >= 0;
  if (L.coupled) return &cell_row<T, true, false, true>;
  if (has_i && has_f) return &cell_row<T, true, true, false>;
  if (has_i) return &cell_row<T, true, false, false>;
  if (has_f) return &cell_row<T, false, true, false>;
  return &cell_row<T, false, false, false>;
}

template <typename T>
void lstm_forward_impl(const Tensor& inputs, const Tensor& weight_ih, const Tensor& bias, const Tensor& weight_hh,
                       const Tensor& peephole, const Tensor& recurrence, const LSTMLayout& L,
                       const std::vector<Slot>& slot, Tensor& hs, Tensor& acts, Tensor& cells, Tensor& pres) {
  const int64_t steps = inputs.size(0), batch = inputs.size(1);
  const int64_t width = weight_hh.size(0), H = weight_hh.size(1);
  const Slot gate = slot[0], candidate = slot[1], output = slot[2];
  const bool keep = pres.defined();
  const T* w = weight_hh.data_ptr<T>();
  const T* rec = L.recurrent_gates ? recurrence.data_ptr<T>() : nullptr;  // R (3H, 3H)
  std::vector<T> gates_prev(L.recurrent_gates ? batch * 3 * H : 0);      // [i, f, o]_{t-1}
  const int64_t gate_blocks[3] = {L.bi, L.bf, L.bo};
  const T* b_p = bias.data_ptr<T>();
  T* hs_p = hs.data_ptr<T>();
  T* acts_p = acts.data_ptr<T>();
  T* cells_p = cells.data_ptr<T>();
  T* pres_p = keep ? pres.data_ptr<T>() : nullptr;
  const int64_t tile = batch * width, state = batch * H;  // elements per step
  const T* pe = peephole.defined() ? peephole.data_ptr<T>() : nullptr;
  const T* pe_i = L.pi >= 0 ? pe + L.pi * H : nullptr;
  const T* pe_f = L.pf >= 0 ? pe + L.pf * H : nullptr;
  const T* pe_o = L.po >= 0 ? pe + L.po * H : nullptr;
  std::vector<T> squashed(H);
  const CellRow<T> cell_update = cell_row_for<T>(L);
  const std::vector<T> zeros(H, T(0));  // c_{-1}
  project_into<T>(inputs, weight_ih, keep ? pres_p : acts_p);
  for (int64_t t = 0; t < steps; ++t) {
    T* pre_p = keep ? pres_p + t * tile : acts_p + t * tile;
    T* act_p = acts_p + t * tile;
    if (t > 0) {
      gemm<T>(false, true, batch, width, H, hs_p + (t - 1) * state, H, w, H, T(1), pre_p, width);  // += h W^T
      if (L.recurrent_gates) {  // the i, f, o pre-activations += R [i, f, o]_{t-1}, one block row of R each
        gather_gates(act_p - tile, L, batch, H, width, gates_prev.data());
        for (int64_t r = 0; r < 3; ++r)
          gemm<T>(false, true, batch, H, 3 * H, gates_prev.data(), 3 * H, rec + r * H * 3 * H, 3 * H, T(1),
                  pre_p + gate_blocks[r] * H, width);
      }
    }
    T* c_p = cells_p + t * state;
    T* h_p = hs_p + t * state;
    const T* c_prev_p = t > 0 ? c_p - state : nullptr;
    for (int64_t b = 0; b < batch; ++b) {
      T* p = pre_p + b * width;
      T* a = act_p + b * width;
      T* c = c_p + b * H;
      T* h = h_p + b * H;
      const T* cp = c_prev_p ? c_prev_p + b * H : nullptr;
      for (int64_t j = 0; j < width; ++j) p[j] += b_p[j];
      if (cp && pe_i)
        for (int64_t j = 0; j < H; ++j) p[L.bi * H + j] += pe_i[j] * cp[j];
      if (cp && pe_f)
        for (int64_t j = 0; j < H; ++j) p[L.bf * H + j] += pe_f[j] * cp[j];
      if (L.bi >= 0) activate(gate, p + L.bi * H, a + L.bi * H, H);
      if (L.bf >= 0) activate(gate, p + L.bf * H, a + L.bf * H, H);
      activate(candidate, p + L.bg * H, a + L.bg * H, H);
      cell_update(H, L.bi >= 0 ? a + L.bi * H : nullptr, L.bf >= 0 ? a + L.bf * H : nullptr, a + L.bg * H,
                  cp ? cp : zeros.data(), c);
      if (L.bo >= 0) {
        if (pe_o)
          for (int64_t j = 0; j < H; ++j) p[L.bo * H + j] += pe_o[j] * c[j];  // o peeks at the new c
        activate(gate, p + L.bo * H, a + L.bo * H, H);
      }
      activate(output, c, squashed.data(), H);
      if (L.bo >= 0) {
        const T* o = a + L.bo * H;
        for (int64_t j = 0; j < H; ++j) h[j] = o[j] * squashed[j];
      } else {
        std::copy(squashed.begin(), squashed.end(), h);
      }
    }
  }
}

std::vector<Tensor> lstm_forward(Tensor inputs, Tensor weight_ih, Tensor bias, Tensor weight_hh, Tensor peephole,
                                 Tensor recurrence, std::vector<int64_t> blocks, std::vector<int64_t> peeps,
                                 bool coupled, std::vector<int64_t> codes, std::vector<double> slopes) {
  check_inputs(inputs, weight_ih, bias, weight_hh);
  const auto slot = slots_of(codes, slopes);
  TORCH_CHECK(slot.size() == 3, "the LSTM takes gate, candidate and output codes");
  const LSTMLayout L = lstm_layout(blocks, peeps, coupled, recurrence);
  inputs = inputs.contiguous();
  weight_ih = weight_ih.contiguous();
  bias = bias.contiguous();
  weight_hh = weight_hh.contiguous();
  peephole = peephole.numel() > 0 ? peephole.contiguous() : Tensor();
  const int64_t steps = inputs.size(0), batch = inputs.size(1), width = weight_hh.size(0);
  const int64_t H = weight_hh.size(1);
  const auto options = inputs.options();
  Tensor hs = at::empty({steps, batch, H}, options);
  Tensor acts = at::empty({steps, batch, width}, options);
  Tensor cells = at::empty({steps, batch, H}, options);
  Tensor pres = needs_input(slot[0]) || needs_input(slot[1]) ? at::empty({steps, batch, width}, options) : Tensor();
  if (L.recurrent_gates) recurrence = recurrence.contiguous();
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "lstm_forward", [&] {
    lstm_forward_impl<scalar_t>(inputs, weight_ih, bias, weight_hh, peephole, recurrence, L, slot, hs, acts, cells,
                                pres);
  });
  return {hs, acts, cells, pres.defined() ? pres : at::empty({0}, options)};
}

// One row of the LSTM's backward step: d pre for each gate block from dL/dh_t and the carried dL/dc, and
// dL/dc_{t-1} (into dc), for any layout (the plain LSTM and every Greff et al. variant). Which gates exist,
// whether they have peepholes, whether f = 1 - i and whether the gates feed back through R (FGR) are template
// arguments, so each layout gets its own branch-free loop that the compiler vectorises; written once with
// run-time tests instead, the tests stayed inside the loop and the variants' backward ran scalar. cp is zeros
// at t = 0; fg (FGR only) is dL/d[i, f, o] from step t+1 through R, in the row's block layout, zeros at t = T-1.
template <typename T, bool HasI, bool HasF, bool HasO, bool Peep, bool Coupled, bool Feedback>
void lstm_row(const LSTMLayout& L, int64_t H, const T* __restrict dh, const T* __restrict squashed,
              const T* __restrict squashed_slope, const T* __restrict a, const T* __restrict slope,
              const T* __restrict c, const T* __restrict cp, const T* __restrict fg, const T* __restrict pe_i,
              const T* __restrict pe_f, const T* __restrict pe_o, T* __restrict dc, T* __restrict gp,
              T* __restrict gpe_i, T* __restrict gpe_f, T* __restrict gpe_o) {
  const T* i = HasI ? a + L.bi * H : nullptr;
  const T* f = HasF ? a + L.bf * H : nullptr;
  const T* g = a + L.bg * H;
  const T* o = HasO ? a + L.bo * H : nullptr;
  const T* si = HasI ? slope + L.bi * H : nullptr;
  const T* sf = HasF ? slope + L.bf * H : nullptr;
  const T* sg = slope + L.bg * H;
  const T* so = HasO ? slope + L.bo * H : nullptr;
  T* gi = HasI ? gp + L.bi * H : nullptr;
  T* gf = HasF ? gp + L.bf * H : nullptr;
  T* gg = gp + L.bg * H;
  T* go = HasO ? gp + L.bo * H : nullptr;
  for (int64_t j = 0; j < H; ++j) {
    const T cpj = cp[j];
    T d_pre_o = T(0);
    if constexpr (HasO) {
      T d_o = dh[j] * squashed[j];
      if constexpr (Feedback) d_o += fg[L.bo * H + j];
      d_pre_o = d_o * so[j];
      go[j] = d_pre_o;
    }
    T dcj = dc[j] + dh[j] * (HasO ? o[j] : T(1)) * squashed_slope[j];
    if constexpr (HasO && Peep) dcj += d_pre_o * pe_o[j];
    const T ij = HasI ? i[j] : T(1);
    gg[j] = dcj * ij * sg[j];
    T d_i = dcj * g[j];
    T d_f = dcj * cpj;
    if constexpr (Feedback) {
      d_i += fg[L.bi * H + j];
      d_f += fg[L.bf * H + j];
    }
    if constexpr (Coupled) d_i -= d_f;  // f = 1 - i
    T d_pre_i = T(0), d_pre_f = T(0);
    if constexpr (HasI) {
      d_pre_i = d_i * si[j];
      gi[j] = d_pre_i;
    }
    if constexpr (HasF) {
      d_pre_f = d_f * sf[j];
      gf[j] = d_pre_f;
    }
    const T fj = HasF ? f[j] : (Coupled ? T(1) - ij : T(1));
    T carry = dcj * fj;  // dL/dc_{t-1}
    if constexpr (Peep && HasI) carry += d_pre_i * pe_i[j];
    if constexpr (Peep && HasF) carry += d_pre_f * pe_f[j];
    dc[j] = carry;
    if constexpr (Peep && HasI) gpe_i[j] += d_pre_i * cpj;
    if constexpr (Peep && HasF) gpe_f[j] += d_pre_f * cpj;
    if constexpr (Peep && HasO) gpe_o[j] += d_pre_o * c[j];
  }
}

template <typename T>
using LSTMRow = void (*)(const LSTMLayout&, int64_t, const T*, const T*, const T*, const T*, const T*, const T*,
                         const T*, const T*, const T*, const T*, const T*, T*, T*, T*, T*, T*);

// The instance of lstm_row for a layout. Every layout a cell makes has one: peepholes on all of its
// gates or on none, f = 1 - i only with an input gate and no forget gate of its own, the gate recurrence
// only with all three gates.
template <typename T>
LSTMRow<T> lstm_row_for(const LSTMLayout& L, bool pi, bool pf, bool po) {
  const bool has_i = L.bi >= 0, has_f = L.bf >= 0, has_o = L.bo >= 0;
  const bool peep = pi || pf || po;
  TORCH_CHECK(!peep || (pi == has_i && pf == has_f && po == has_o), "peepholes must be on every gate or none");
  TORCH_CHECK(!L.coupled || (has_i && !has_f), "coupled gates need an input gate and no forget gate");
  TORCH_CHECK(!L.recurrent_gates || (has_i && has_f && has_o && !L.coupled),
              "the gate recurrence needs the input, forget and output gates");
  if (L.recurrent_gates)
    return peep ? &lstm_row<T, true, true, true, true, false, true>
                : &lstm_row<T, true, true, true, false, false, true>;
  if (L.coupled)
    return has_o ? (peep ? &lstm_row<T, true, false, true, true, true, false>
                         : &lstm_row<T, true, false, true, false, true, false>)
                 : (peep ? &lstm_row<T, true, false, false, true, true, false>
                         : &lstm_row<T, true, false, false, false, true, false>);
#define ACTSTUDY_ROW(I, F, O)                                                                          \
  if (has_i == I && has_f == F && has_o == O)                                                          \
    return peep ? &lstm_row<T, I, F, O, true, false, false> : &lstm_row<T, I, F, O, false, false, false>;
  ACTSTUDY_ROW(true, true, true)
  ACTSTUDY_ROW(false, true, true)
  ACTSTUDY_ROW(true, false, true)
  ACTSTUDY_ROW(true, true, false)
  ACTSTUDY_ROW(false, false, true)
  ACTSTUDY_ROW(false, true, false)
  ACTSTUDY_ROW(true, false, false)
#undef ACTSTUDY_ROW
  return peep ? &lstm_row<T, false, false, false, true, false, false>
              : &lstm_row<T, false, false, false, false, false, false>;
}

template <typename T>
void lstm_backward_impl(const Tensor& grad_hs, const Tensor& weight_hh, const Tensor& peephole,
                        const Tensor& recurrence, const LSTMLayout& L, const std::vector<Slot>& slot,
                        const Tensor& acts, const Tensor& cells, const Tensor& pres, Tensor& grad_pre,
                        Tensor& grad_bias, Tensor& grad_peephole, Tensor& grad_recurrence) {
  const int64_t steps = acts.size(0), batch = acts.size(1), width = acts.size(2);
  const int64_t H = weight_hh.size(1);
  const Slot gate = slot[0], candidate = slot[1], output = slot[2];
  const bool keep = pres.defined();
  const int64_t tile = batch * width, state = batch * H;  // elements per step
  std::vector<T> dh(state), dc(state, T(0));  // dL/dh_t; dL/dc_t from step t+1
  std::vector<T> from_gates(L.recurrent_gates ? tile : 0);  // dL/d act_t through the gate recurrence (i, f, o)
  std::vector<T> grad_gates(L.recurrent_gates ? batch * 3 * H : 0);  // d pre_{i,f,o} at t, side by side
  const int64_t gate_blocks[3] = {L.bi, L.bf, L.bo};
  const T* rec = L.recurrent_gates ? recurrence.data_ptr<T>() : nullptr;
  T* grad_rec = L.recurrent_gates ? grad_recurrence.data_ptr<T>() : nullptr;
  const T* w = weight_hh.data_ptr<T>();
  const StepRows<T> grad_rows(grad_hs);
  const T* acts_p = acts.data_ptr<T>();
  const T* pres_p = keep ? pres.data_ptr<T>() : nullptr;
  const T* cells_p = cells.data_ptr<T>();
  T* grad_pre_p = grad_pre.data_ptr<T>();
  T* grad_b = grad_bias.data_ptr<T>();  // dL/d bias = the sum of every row of grad_pre, taken while in cache
  const T* pe = peephole.defined() ? peephole.data_ptr<T>() : nullptr;
  const T* pe_i = L.pi >= 0 ? pe + L.pi * H : nullptr;
  const T* pe_f = L.pf >= 0 ? pe + L.pf * H : nullptr;
  const T* pe_o = L.po >= 0 ? pe + L.po * H : nullptr;
  T* gpe = grad_peephole.defined() ? grad_peephole.data_ptr<T>() : nullptr;
  T* gpe_i = L.pi >= 0 ? gpe + L.pi * H : nullptr;
  T* gpe_f = L.pf >= 0 ? gpe + L.pf * H : nullptr;
  T* gpe_o = L.po >= 0 ? gpe + L.po * H : nullptr;
  std::vector<T> squashed(H), squashed_slope(H), slope(width);
  const LSTMRow<T> row = lstm_row_for<T>(L, pe_i, pe_f, pe_o);
  const std::vector<T> zeros(width, T(0));  // c_{-1}, and no feedback after the last step
  for (int64_t t = steps - 1; t >= 0; --t) {
    // dL/dh_t: from above, and from step t+1 through W_hh
    grad_rows.copy_step(t, batch, H, dh.data());
    const bool gates_feedback = L.recurrent_gates && t < steps - 1;
    if (t < steps - 1)
      gemm<T>(false, false, batch, H, width, grad_pre_p + (t + 1) * tile, width, w, H, T(1), dh.data(), H);
    const T* act_p = acts_p + t * tile;
    const T* pre_p = keep ? pres_p + t * tile : nullptr;
    const T* c_p = cells_p + t * state;
    const T* c_prev_p = t > 0 ? c_p - state : nullptr;
    const T* dh_p = dh.data();
    const T* fg_p = gates_feedback ? from_gates.data() : nullptr;
    T* dc_p = dc.data();
    T* gp_p = grad_pre_p + t * tile;
    for (int64_t b = 0; b < batch; ++b) {
      const T* a = act_p + b * width;
      const T* x = pre_p ? pre_p + b * width : nullptr;
      const T* c = c_p + b * H;
      const T* cp = c_prev_p ? c_prev_p + b * H : nullptr;
      const T* dhb = dh_p + b * H;
      const T* fg = fg_p ? fg_p + b * width : nullptr;
      T* dcb = dc_p + b * H;
      T* gp = gp_p + b * width;
      for (int64_t k : {L.bi, L.bf, L.bo})
        if (k >= 0) slope_of(gate, x ? x + k * H : nullptr, a + k * H, slope.data() + k * H, H);
      slope_of(candidate, x ? x + L.bg * H : nullptr, a + L.bg * H, slope.data() + L.bg * H, H);
      activate(output, c, squashed.data(), H);
      slope_of(output, c, squashed.data(), squashed_slope.data(), H);
      row(L, H, dhb, squashed.data(), squashed_slope.data(), a, slope.data(), c, cp ? cp : zeros.data(),
          fg ? fg : zeros.data(), pe_i, pe_f, pe_o, dcb, gp, gpe_i, gpe_f, gpe_o);
      for (int64_t j = 0; j < width; ++j) grad_b[j] += gp[j];
    }
    if (L.recurrent_gates && t > 0) {  // dL/d[i, f, o]_{t-1} through R, for step t-1
      gather_gates(gp_p, L, batch, H, width, grad_gates.data());
      for (int64_t r = 0; r < 3; ++r)
        gemm<T>(false, false, batch, H, 3 * H, grad_gates.data(), 3 * H, rec + r * H, 3 * H, T(0),
                from_gates.data() + gate_blocks[r] * H, width);
    }
  }
  if (L.recurrent_gates && steps > 1) {
    // dL/dR = sum_t d pre_{i,f,o,t}^T [i, f, o]_{t-1}: after the loop, one product per pair of blocks over
    // all (T-1)*B rows at once, read in place through the row stride. Accumulated step by step instead
    // (K = B), the (3H, 3H) sum went through the cache every step; this was a quarter of FGR's arithmetic.
    const int64_t rows = (steps - 1) * batch;
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t c = 0; c < 3; ++c)
        gemm<T>(true, false, H, H, rows, grad_pre_p + tile + gate_blocks[r] * H, width,
                acts_p + gate_blocks[c] * H, width, T(0), grad_rec + r * H * 3 * H + c * H, 3 * H);
  }
}

std::vector<Tensor> lstm_backward(Tensor grad_hs, Tensor weight_hh, Tensor peephole, Tensor recurrence,
                                  Tensor hs, Tensor acts, Tensor cells, Tensor pres, std::vector<int64_t> blocks,
                                  std::vector<int64_t> peeps, bool coupled, std::vector<int64_t> codes,
                                  std::vector<double> slopes) {
  const auto slot = slots_of(codes, slopes);
  const LSTMLayout L = lstm_layout(blocks, peeps, coupled, recurrence);
  grad_hs = with_unit_stride(grad_hs);
  weight_hh = weight_hh.contiguous();
  peephole = peephole.numel() > 0 ? peephole.contiguous() : Tensor();
  if (pres.defined() && pres.numel() == 0) pres = Tensor();
  const int64_t steps = acts.size(0), batch = acts.size(1), width = acts.size(2);
  const int64_t H = weight_hh.size(1);
  Tensor grad_pre = at::empty({steps, batch, width}, acts.options());
  Tensor grad_peephole = peephole.defined() ? at::zeros_like(peephole) : Tensor();
  if (L.recurrent_gates) recurrence = recurrence.contiguous();
  Tensor grad_recurrence = L.recurrent_gates ? at::zeros_like(recurrence) : at::empty({0}, acts.options());
  Tensor grad_bias = at::zeros({width}, acts.options());
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lstm_backward", [&] {
    lstm_backward_impl<scalar_t>(grad_hs, weight_hh, peephole, recurrence, L, slot, acts, cells, pres, grad_pre,
                                 grad_bias, grad_peephole, grad_recurrence);
  });
  return {grad_pre, grad_bias, grad_recurrent_weight(grad_pre, hs, weight_hh),
          grad_peephole.defined() ? grad_peephole : at::empty({0}, acts.options()), grad_recurrence};
}

// ------------------------------------------------------------------------------------------------ GRU
//
// torch.nn.GRU's form, blocks r, z, n: n = candidate(W_n x + b_in + r * (U_n h + b_hn)),
// h = (1 - z) n + z h_prev. `acts` keeps r, z, n per step. U_n h + b_hn, which the reset gate's gradient
// needs, is not kept: the backward recomputes it a chunk of steps at a time in one matmul, ~1/9 more
// arithmetic for 1/5 less memory per step (what brought the GRU's peak under 1.5x nn.GRU's at small shapes).

template <typename T>
void gru_forward_impl(const Tensor& inputs, const Tensor& weight_ih, const Tensor& bias_ih, const Tensor& weight_hh,
                      const Tensor& bias_hh, const std::vector<Slot>& slot, Tensor& hs, Tensor& acts, Tensor& pres) {
  const int64_t steps = inputs.size(0), batch = inputs.size(1), H = weight_hh.size(1);
  const int64_t width = 3 * H, two = 2 * H;
  const Slot gate = slot[0], candidate = slot[1];
  const bool keep = pres.defined();
  const int64_t tile = batch * width, state = batch * H;  // elements per step
  const T* w = weight_hh.data_ptr<T>();
  const T* bias = bias_hh.data_ptr<T>();
  const T* b_in = bias_ih.data_ptr<T>();
  std::vector<T> recurrent(tile);
  T* buffer = keep ? pres.data_ptr<T>() : acts.data_ptr<T>();
  project_into<T>(inputs, weight_ih, buffer);
  for (int64_t t = 0; t < steps; ++t) {
    for (int64_t b = 0; b < batch; ++b) std::copy(bias, bias + width, recurrent.data() + b * width);
    if (t > 0)  // U h + b_hh, (B, 3H)
      gemm<T>(false, true, batch, width, H, hs.data_ptr<T>() + (t - 1) * state, H, w, H, T(1), recurrent.data(),
              width);
    const T* rec_p = recurrent.data();
    T* act_p = acts.data_ptr<T>() + t * tile;
    T* h_p = hs.data_ptr<T>() + t * state;
    T* pre_p = buffer + t * tile;  // holds x W_ih^T; becomes the pre-activations (the activations if not kept)
    const T* h_prev_p = t > 0 ? h_p - state : nullptr;
    for (int64_t b = 0; b < batch; ++b) {
      const T* rec = rec_p + b * width;
      T* a = act_p + b * width;
      T* h = h_p + b * H;
      T* pre = pre_p + b * width;
      const T* hp = h_prev_p ? h_prev_p + b * H : nullptr;
      for (int64_t j = 0; j < two; ++j) pre[j] += b_in[j] + rec[j];
      activate(gate, pre, a, two);  // r, z (in place when not kept: pre[two:] is still x W_n^T)
      for (int64_t j = 0; j < H; ++j) pre[two + j] += b_in[two + j] + a[j] * rec[two + j];
      activate(candidate, pre + two, a + two, H);
      const T* z = a + H;
      const T* n = a + two;
      for (int64_t j = 0; j < H; ++j) h[j] = n[j] + z[j] * ((hp ? hp[j] : T(0)) - n[j]);
    }
  }
}

std::vector<Tensor> gru_forward(Tensor inputs, Tensor weight_ih, Tensor bias_ih, Tensor weight_hh, Tensor bias_hh,
                                std::vector<int64_t> codes, std::vector<double> slopes) {
  check_inputs(inputs, weight_ih, bias_ih, weight_hh);
  TORCH_CHECK(weight_hh.size(0) == 3 * weight_hh.size(1), "the GRU's weight_hh must be (3H, H)");
  TORCH_CHECK(bias_hh.dim() == 1 && bias_hh.size(0) == weight_hh.size(0), "bias_hh must be (3H)");
  const auto slot = slots_of(codes, slopes);
  TORCH_CHECK(slot.size() == 2, "the GRU takes gate and candidate codes");
  inputs = inputs.contiguous();
  weight_ih = weight_ih.contiguous();
  bias_ih = bias_ih.contiguous();
  weight_hh = weight_hh.contiguous();
  bias_hh = bias_hh.contiguous();
  const int64_t steps = inputs.size(0), batch = inputs.size(1), H = weight_hh.size(1);
  const auto options = inputs.options();
  Tensor hs = at::empty({steps, batch, H}, options);
  Tensor acts = at::empty({steps, batch, 3 * H}, options);
  Tensor pres = needs_input(slot[0]) || needs_input(slot[1]) ? at::empty({steps, batch, 3 * H}, options) : Tensor();
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "gru_forward", [&] {
    gru_forward_impl<scalar_t>(inputs, weight_ih, bias_ih, weight_hh, bias_hh, slot, hs, acts, pres);
  });
  return {hs, acts, pres.defined() ? pres : at::empty({0}, options)};
}

template <typename T>
void gru_backward_impl(const Tensor& grad_hs, const Tensor& weight_hh, const Tensor& bias_hh,
                       const std::vector<Slot>& slot, const Tensor& hs, const Tensor& acts, const Tensor& pres,
                       Tensor& grad_pre, Tensor& grad_bias_ih, Tensor& grad_weight_hh, Tensor& grad_bias_hh) {
  const int64_t steps = acts.size(0), batch = acts.size(1), H = weight_hh.size(1);
  const int64_t width = 3 * H, two = 2 * H;
  const Slot gate = slot[0], candidate = slot[1];
  const bool keep = pres.defined();
  const int64_t tile = batch * width, state = batch * H;  // elements per step
  const T* w = weight_hh.data_ptr<T>();
  const StepRows<T> grad_rows(grad_hs);
  std::vector<T> dh(state);
  grad_rows.copy_step(steps - 1, batch, H, dh.data());
  std::vector<T> slope(width);
  // dL/d(U h_{t-1} + b_hh) of the step at hand only: dL/dW_hh and dL/db_hh take it in step by step, so no
  // (T, B, 3H) tensor of it is held (the GRU's peak memory).
  std::vector<T> grad_recurrent(tile);
  T* grad_w = grad_weight_hh.data_ptr<T>();
  T* grad_b = grad_bias_hh.data_ptr<T>();
  T* grad_b_in = grad_bias_ih.data_ptr<T>();  // the sum of every row of grad_pre, taken while in cache
  // U_n h_{t-1} + b_hn for the steps of one chunk (about 256K values), recomputed in one matmul as the
  // backward reaches them: rows of steps first..t, h_{-1} = 0 leaving b_hn alone at step 0.
  const T* u_n = w + two * H;  // (H, H) block of W_hh
  const T* b_n = bias_hh.data_ptr<T>() + two;
  const T* hs_p = hs.data_ptr<T>();
  const int64_t chunk = std::max<int64_t>(1, (int64_t(1) << 18) / std::max<int64_t>(1, state));
  std::vector<T> rn_chunk(std::min(chunk, steps) * state);
  int64_t first = steps;  // first step held in rn_chunk
  for (int64_t t = steps - 1; t >= 0; --t) {
    if (t < first) {
      first = std::max<int64_t>(0, t - chunk + 1);
      for (int64_t row = 0; row < (t - first + 1) * batch; ++row) std::copy(b_n, b_n + H, rn_chunk.data() + row * H);
      const int64_t from = std::max<int64_t>(first, 1);  // (rows, H) += h_{s-1} U_n^T for s = from..t
      if (t >= from)
        gemm<T>(false, true, (t - from + 1) * batch, H, H, hs_p + (from - 1) * state, H, u_n, H, T(1),
                rn_chunk.data() + (from - first) * state, H);
    }
    const T* act_p = acts.data_ptr<T>() + t * tile;
    const T* pre_p = keep ? pres.data_ptr<T>() + t * tile : nullptr;
    const T* rn_p = rn_chunk.data() + (t - first) * state;
    const T* h_prev_p = t > 0 ? hs.data_ptr<T>() + (t - 1) * state : nullptr;
    const T* dh_p = dh.data();
    T* gp_p = grad_pre.data_ptr<T>() + t * tile;
    T* gr_p = grad_recurrent.data();
    for (int64_t b = 0; b < batch; ++b) {
      const T* a = act_p + b * width;
      const T* x = pre_p ? pre_p + b * width : nullptr;
      const T* rn = rn_p + b * H;
      const T* hp = h_prev_p ? h_prev_p + b * H : nullptr;
      const T* dhb = dh_p + b * H;
      T* gp = gp_p + b * width;
      T* gr = gr_p + b * width;
      slope_of(gate, x, a, slope.data(), two);
      slope_of(candidate, x ? x + two : nullptr, a + two, slope.data() + two, H);
      for (int64_t j = 0; j < H; ++j) {
        const T r = a[j], z = a[H + j], n = a[two + j];
        const T d = dhb[j];
        const T d_pre_n = d * (T(1) - z) * slope[two + j];
        const T d_pre_z = d * ((hp ? hp[j] : T(0)) - n) * slope[H + j];
        const T d_pre_r = d_pre_n * rn[j] * slope[j];
        gp[j] = d_pre_r;
        gp[H + j] = d_pre_z;
        gp[two + j] = d_pre_n;
        gr[j] = d_pre_r;
        gr[H + j] = d_pre_z;
        gr[two + j] = d_pre_n * r;  // r scales U_n h + b_hn
      }
    }
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t j = 0; j < width; ++j) {
        grad_b[j] += gr_p[b * width + j];
        grad_b_in[j] += gp_p[b * width + j];
      }
    if (t > 0) {
      gemm<T>(true, false, width, H, batch, gr_p, width, h_prev_p, H, T(1), grad_w, H);  // += (3H, B) (B, H)
      // dL/dh_{t-1} = from above + dh_t z_t + dL/d(U h_{t-1}) W_hh, overwriting dh row by row in place
      for (int64_t b = 0; b < batch; ++b) {
        const T* above = grad_rows.row(t - 1, b);
        const T* z = act_p + b * width + H;
        T* d = dh.data() + b * H;
        for (int64_t j = 0; j < H; ++j) d[j] = above[j] + d[j] * z[j];
      }
      gemm<T>(false, false, batch, H, width, gr_p, width, w, H, T(1), dh.data(), H);
    }
  }
}

std::vector<Tensor> gru_backward(Tensor grad_hs, Tensor weight_hh, Tensor bias_hh, Tensor hs, Tensor acts,
                                 Tensor pres, std::vector<int64_t> codes, std::vector<double> slopes) {
  const auto slot = slots_of(codes, slopes);
  grad_hs = with_unit_stride(grad_hs);
  weight_hh = weight_hh.contiguous();
  bias_hh = bias_hh.contiguous();
  if (pres.defined() && pres.numel() == 0) pres = Tensor();
  const int64_t steps = acts.size(0), batch = acts.size(1), H = weight_hh.size(1);
  Tensor grad_pre = at::empty({steps, batch, 3 * H}, acts.options());
  Tensor grad_weight_hh = at::zeros_like(weight_hh);
  Tensor grad_bias_hh = at::zeros({3 * H}, acts.options());
  Tensor grad_bias_ih = at::zeros({3 * H}, acts.options());
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "gru_backward", [&] {
    gru_backward_impl<scalar_t>(grad_hs, weight_hh, bias_hh, slot, hs, acts, pres, grad_pre, grad_bias_ih,
                                grad_weight_hh, grad_bias_hh);
  });
  return {grad_pre, grad_bias_ih, grad_weight_hh, grad_bias_hh};
}

// ------------------------------------------------------------------------------------------------ RNN
//
// h_t = candidate(W x_t + b + U h_{t-1}).

template <typename T>
void rnn_forward_impl(const Tensor& inputs, const Tensor& weight_ih, const Tensor& bias, const Tensor& weight_hh,
                      const Slot& candidate, Tensor& hs, Tensor& pres) {
  const int64_t steps = inputs.size(0), batch = inputs.size(1), H = weight_hh.size(1);
  const int64_t state = batch * H;
  const T* w = weight_hh.data_ptr<T>();
  const T* b_p = bias.data_ptr<T>();
  T* hs_p = hs.data_ptr<T>();
  T* buffer = pres.defined() ? pres.data_ptr<T>() : hs_p;  // activated in place if not kept
  project_into<T>(inputs, weight_ih, buffer);
  for (int64_t t = 0; t < steps; ++t) {
    T* pre = buffer + t * state;
    if (t > 0) gemm<T>(false, true, batch, H, H, hs_p + (t - 1) * state, H, w, H, T(1), pre, H);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t j = 0; j < H; ++j) pre[b * H + j] += b_p[j];
    activate(candidate, pre, hs_p + t * state, state);
  }
}

std::vector<Tensor> rnn_forward(Tensor inputs, Tensor weight_ih, Tensor bias, Tensor weight_hh,
                                std::vector<int64_t> codes, std::vector<double> slopes) {
  check_inputs(inputs, weight_ih, bias, weight_hh);
  TORCH_CHECK(weight_hh.size(0) == weight_hh.size(1), "the RNN's weight_hh must be (H, H)");
  const auto slot = slots_of(codes, slopes);
  TORCH_CHECK(slot.size() == 1, "the RNN takes a candidate code");
  inputs = inputs.contiguous();
  weight_ih = weight_ih.contiguous();
  bias = bias.contiguous();
  weight_hh = weight_hh.contiguous();
  const int64_t steps = inputs.size(0), batch = inputs.size(1), H = weight_hh.size(1);
  const auto options = inputs.options();
  Tensor hs = at::empty({steps, batch, H}, options);
  Tensor pres = needs_input(slot[0]) ? at::empty({steps, batch, H}, options) : Tensor();
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "rnn_forward", [&] {
    rnn_forward_impl<scalar_t>(inputs, weight_ih, bias, weight_hh, slot[0], hs, pres);
  });
  return {hs, pres.defined() ? pres : at::empty({0}, options)};
}

std::vector<Tensor> rnn_backward(Tensor grad_hs, Tensor weight_hh, Tensor hs, Tensor pres, std::vector<int64_t> codes,
                                 std::vector<double> slopes) {
  const auto slot = slots_of(codes, slopes);
  grad_hs = with_unit_stride(grad_hs);
  weight_hh = weight_hh.contiguous();
  if (pres.defined() && pres.numel() == 0) pres = Tensor();
  const int64_t steps = hs.size(0), batch = hs.size(1), H = hs.size(2);
  Tensor grad_pre = at::empty_like(hs);
  Tensor grad_bias = at::zeros({H}, hs.options());
  AT_DISPATCH_FLOATING_TYPES(hs.scalar_type(), "rnn_backward", [&] {
    using T = scalar_t;
    const int64_t state = batch * H;
    std::vector<T> slope(state), dh(state);
    T* grad_b = grad_bias.data_ptr<T>();
    const T* w = weight_hh.data_ptr<T>();
    const StepRows<T> grad_rows(grad_hs);
    const T* hs_p = hs.data_ptr<T>();
    T* gp = grad_pre.data_ptr<T>();
    for (int64_t t = steps - 1; t >= 0; --t) {
      grad_rows.copy_step(t, batch, H, dh.data());  // from above ...
      if (t < steps - 1) gemm<T>(false, false, batch, H, H, gp + (t + 1) * state, H, w, H, T(1), dh.data(), H);
      slope_of(slot[0], pres.defined() ? pres.data_ptr<T>() + t * state : nullptr, hs_p + t * state, slope.data(),
               state);
      for (int64_t k = 0; k < state; ++k) gp[t * state + k] = dh[k] * slope[k];
      for (int64_t b = 0; b < batch; ++b)  // dL/d bias, while the rows are in cache
        for (int64_t j = 0; j < H; ++j) grad_b[j] += gp[t * state + b * H + j];
    }
  });
  return {grad_pre, grad_bias, grad_recurrent_weight(grad_pre, hs, weight_hh)};
}

// Activation and derivative alone, so that tests can pin every code to the registry directly.
std::vector<Tensor> activation(Tensor x, int64_t code, double negative_slope) {
  x = x.contiguous();
  const Slot slot{code, negative_slope};
  TORCH_CHECK(code >= 0 && code < CODE_COUNT, "unknown activation code ", code);
  Tensor y = at::empty_like(x), d = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "activation", [&] {
    activate(slot, x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), x.numel());
    slope_of(slot, x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), d.data_ptr<scalar_t>(), x.numel());
  });
  return {y, d};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("lstm_forward", &lstm_forward,
        "LSTM (any Greff et al. variant) over all steps from its inputs: hs, acts, cells, pres");
  m.def("lstm_backward", &lstm_backward,
        "LSTM backward through time: d pre-activations (for d inputs, d W_ih), d bias, d W_hh, d peephole, d R");
  m.def("gru_forward", &gru_forward, "GRU over all steps from its inputs: hs, acts, pres");
  m.def("gru_backward", &gru_backward,
        "GRU backward through time: d pre-activations (for d inputs, d W_ih), d b_ih, d W_hh, d b_hh");
  m.def("rnn_forward", &rnn_forward, "vanilla RNN over all steps from its inputs: hs, pres");
  m.def("rnn_backward", &rnn_backward,
        "vanilla RNN backward through time: d pre-activations (for d inputs, d W_ih), d bias, d W_hh");
  m.def("activation", &activation, "an activation and its derivative, by code: y, dy/dx");
  m.def("code_count", [] { return static_cast<int64_t>(CODE_COUNT); });
}
