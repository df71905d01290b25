#include "data.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "files.h"

namespace resx {
namespace fs = std::filesystem;

std::pair<at::Tensor, at::Tensor> read_binary(const std::string& path) {
  if (!fs::is_regular_file(path)) throw Error(path + ": no such file");
  const auto size = static_cast<int64_t>(fs::file_size(path));
  if (size == 0 || size % kRecordBytes != 0) {
    throw Error(path + ": size " + std::to_string(size) + " is not a positive multiple of " +
                std::to_string(kRecordBytes) +
                " (1 label byte + 3,072 pixel bytes per record); the file is truncated or not CIFAR-10");
  }
  const int64_t n = size / kRecordBytes;
  auto raw = at::empty({n, kRecordBytes}, at::kByte);
  std::ifstream in(path, std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(raw.data_ptr<uint8_t>()), size)) {
    throw Error(path + ": read failed");
  }
  auto labels = raw.select(1, 0).to(at::kLong);
  const auto* l = raw.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (l[i * kRecordBytes] > 9) {
      throw Error(path + ": record " + std::to_string(i) + " has label " + std::to_string(l[i * kRecordBytes]) +
                  ", CIFAR-10 labels are 0..9");
    }
  }
  auto images = raw.narrow(1, 1, kRecordBytes - 1).contiguous().view({n, 3, 32, 32});
  return {images, labels};
}

std::pair<at::Tensor, at::Tensor> load_split(const std::string& data_dir, const std::string& split) {
  fs::path dir = data_dir;
  if (!fs::is_directory(dir)) {
    throw Error(data_dir + ": no such directory (get CIFAR-10 with `resx data fetch`)");
  }
  if (fs::is_directory(dir / "cifar-10-batches-bin")) dir /= "cifar-10-batches-bin";
  std::vector<std::string> names;
  if (split == "train") {
    for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  } else if (split == "test") {
    names.push_back("test_batch.bin");
  } else {
    throw Error("unknown split '" + split + "': train or test");
  }
  std::vector<at::Tensor> images, labels;
  for (const auto& name : names) {
    auto [x, y] = read_binary((dir / name).string());
    images.push_back(x);
    labels.push_back(y);
  }
  return {at::cat(images), at::cat(labels)};
}

std::pair<at::Tensor, at::Tensor> first_n(std::pair<at::Tensor, at::Tensor> split, int64_t n) {
  if (n <= 0 || n >= split.first.size(0)) return split;
  return {split.first.narrow(0, 0, n).contiguous(), split.second.narrow(0, 0, n).contiguous()};
}

uint64_t epoch_seed(uint64_t seed, uint64_t epoch) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ULL + epoch + 1;  // wraps mod 2^64, as in Python's mask
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFFULL;
}

EpochPlan EpochPlan::draw(uint64_t seed, uint64_t epoch, int64_t n, const AugmentSpec& spec) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(epoch_seed(seed, epoch));
  EpochPlan plan;
  plan.order = at::randperm(n, gen, at::kLong);
  plan.offsets = at::randint(0, 2 * spec.padding + 1, {n, 2}, gen, at::kLong);
  plan.flips = at::rand({n}, gen, at::kFloat) < spec.flip_p;
  return plan;
}

int64_t shard_size(int64_t n, int64_t world) { return (n + world - 1) / world; }

EpochPlan EpochPlan::shard(int64_t rank, int64_t world) const {
  if (world == 1) return *this;
  const int64_t n = order.size(0);
  const auto positions =
      at::arange(shard_size(n, world) * world, at::kLong).remainder(n).slice(0, rank, c10::nullopt, world);
  return {order.index_select(0, positions), offsets.index_select(0, positions), flips.index_select(0, positions)};
}

at::Tensor normalization_table(const AugmentSpec& spec) {
  auto mean = at::tensor(std::vector<float>(spec.mean.begin(), spec.mean.end())).view({3, 1});
  auto std = at::tensor(std::vector<float>(spec.std.begin(), spec.std.end())).view({3, 1});
  return at::arange(256, at::kByte).to(at::kFloat).expand({3, 256}).div(255).sub(mean).div(std).contiguous();
}

Batch make_batch(const at::Tensor& images, const at::Tensor& labels, const at::Tensor& index, const at::Tensor& offsets,
                 const at::Tensor& flips, const AugmentSpec& spec, const at::Tensor& table, bool pinned) {
  TORCH_CHECK(images.scalar_type() == at::kByte && images.dim() == 4 && images.is_contiguous(),
              "images must be contiguous uint8 [N,C,H,W]");
  const int64_t b = index.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const bool augment = offsets.defined();
  const int64_t s = augment ? spec.crop : h, sw = augment ? spec.crop : w, p = augment ? spec.padding : 0;
  auto labels_out = labels.index_select(0, index);
  Batch out{at::empty({b, c, s, sw}, at::kByte),
            at::empty({b, c, s, sw}, at::TensorOptions(at::kFloat).pinned_memory(pinned)),
            pinned ? labels_out.pin_memory() : labels_out};
  const auto* src = images.const_data_ptr<uint8_t>();
  const auto* idx = index.const_data_ptr<int64_t>();
  const auto* off = augment ? offsets.const_data_ptr<int64_t>() : nullptr;
  const auto* flip = augment ? flips.const_data_ptr<bool>() : nullptr;
  const auto* lut = table.const_data_ptr<float>();
  auto* u8 = out.images.data_ptr<uint8_t>();
  auto* f32 = out.inputs.data_ptr<float>();
  for (int64_t i = 0; i < b; ++i) {
    const uint8_t* img = src + idx[i] * c * h * w;
    const int64_t dy = augment ? off[2 * i] - p : 0, dx = augment ? off[2 * i + 1] - p : 0;
    const bool flipped = augment && flip[i];
    for (int64_t ch = 0; ch < c; ++ch) {
      const float* row_lut = lut + ch * 256;
      for (int64_t y = 0; y < s; ++y, u8 += sw, f32 += sw) {
        const int64_t sy = y + dy;
        if (sy < 0 || sy >= h) {
          std::memset(u8, 0, sw);
          std::fill(f32, f32 + sw, row_lut[0]);
          continue;
        }
        const uint8_t* line = img + (ch * h + sy) * w;
        for (int64_t x = 0; x < sw; ++x) {
          const int64_t sx = (flipped ? sw - 1 - x : x) + dx;  // crop, then flip
          const uint8_t v = (sx >= 0 && sx < w) ? line[sx] : 0;
          u8[x] = v;
          f32[x] = row_lut[v];
        }
      }
    }
  }
  return out;
}

at::Tensor augment_batch(const at::Tensor& images, const at::Tensor& offsets, const at::Tensor& flips,
                         const AugmentSpec& spec) {
  auto index = at::arange(images.size(0), at::kLong);
  return make_batch(images.contiguous(), at::zeros({images.size(0)}, at::kLong), index, offsets.contiguous(),
                    flips.contiguous(), spec, normalization_table(spec))
      .images;
}

at::Tensor normalize(const at::Tensor& images, const AugmentSpec& spec) {
  auto index = at::arange(images.size(0), at::kLong);
  return make_batch(images.contiguous(), at::zeros({images.size(0)}, at::kLong), index, {}, {}, spec,
                    normalization_table(spec))
      .inputs;
}

CifarLoader::CifarLoader(at::Tensor images, at::Tensor labels, int64_t batch_size, bool train, uint64_t seed,
                         bool drop_last, AugmentSpec spec, bool prefetch, bool pin_memory, int64_t rank, int64_t world)
    : images_(images.contiguous()),
      labels_(labels.to(at::kLong).contiguous()),
      table_(normalization_table(spec)),
      batch_size_(batch_size),
      train_(train),
      seed_(seed),
      drop_last_(drop_last),
      spec_(spec),
      prefetch_(prefetch),
      pin_memory_(pin_memory),
      rank_(rank),
      world_(world) {
  if (batch_size < 1) throw std::invalid_argument("batch size must be at least 1, got " + std::to_string(batch_size));
  if (images_.size(0) != labels_.size(0)) throw std::invalid_argument("images and labels differ in count");
}

CifarLoader::~CifarLoader() { stop(); }

int64_t CifarLoader::samples() const {
  const int64_t n = images_.size(0);
  return train_ ? shard_size(n, world_) : std::max<int64_t>(0, (n - rank_ + world_ - 1) / world_);
}

int64_t CifarLoader::size() const {
  const int64_t n = samples();
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

Batch CifarLoader::produce(int64_t index) const {
  const int64_t lo = index * batch_size_, len = std::min(batch_size_, samples() - lo);
  if (!train_) {
    const auto idx = at::arange(rank_ + lo * world_, rank_ + (lo + len) * world_, world_, at::kLong);
    return make_batch(images_, labels_, idx, {}, {}, spec_, table_, pin_memory_);
  }
  return make_batch(images_, labels_, plan_.order.narrow(0, lo, len), plan_.offsets.narrow(0, lo, len),
                    plan_.flips.narrow(0, lo, len), spec_, table_, pin_memory_);
}

void CifarLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  queue_.clear();
  error_ = nullptr;
  stop_ = false;
}

void CifarLoader::start_epoch(int64_t epoch) {
  stop();
  // The plan is drawn here, in the caller's thread, before any batch exists.
  if (train_) plan_ = EpochPlan::draw(seed_, static_cast<uint64_t>(epoch), images_.size(0), spec_).shard(rank_, world_);
  cursor_ = 0;
  if (!prefetch_) return;
  worker_ = std::thread([this] {
    try {
      for (int64_t i = 0; i < size(); ++i) {
        Batch batch = produce(i);
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return stop_ || queue_.size() < kDepth; });
        if (stop_) return;
        queue_.push_back(std::move(batch));
        cv_.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
      cv_.notify_all();
    }
  });
}

std::optional<Batch> CifarLoader::next() {
  if (cursor_ < 0) throw std::logic_error("CifarLoader: call start_epoch(epoch) before next()");
  if (cursor_ >= size()) return std::nullopt;
  if (!prefetch_) return produce(cursor_++);
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [this] { return !queue_.empty() || error_; });
  if (error_) std::rethrow_exception(error_);
  Batch batch = std::move(queue_.front());
  queue_.pop_front();
  ++cursor_;
  cv_.notify_all();
  return batch;
}

}  // namespace resx
