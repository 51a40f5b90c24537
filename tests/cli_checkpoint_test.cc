// What this proves: the `keel` command line sees engine directories (DIR/wal,
// DIR/checkpoints, DIR/quarantine) and checkpoint files as recovery does, and
// keeps its conventions (DESIGN.md, "Command-line conventions") doing so.
//   - verify reads every checkpoint in full: a clean engine directory exits 0
//     with each checkpoint listed (P4, P6);
//   - a damaged checkpoint is never passed as intact: a flipped byte inside a
//     frame, a truncated file or a wrong footer exits 1, names the file (and the
//     frame and offset), and says what recovery would do instead: fall back to
//     an older valid checkpoint, ignore it for a newer one, or start from the
//     empty state (P6);
//   - info shows each checkpoint's LSN, epoch, sizes, compression ratio, age
//     and frames, and the quarantine's files, in text and in --json;
//   - dump --checkpoint prints the header/footer fields and a frame table that
//     tiles the file exactly, and exits 1 on a damaged file;
//   - leftovers are noted, not errors: a *.ckpt.tmp keeps verify at 0 (P8);
//   - bad input exits 2 with one line naming the flag and file: a missing or
//     directory --checkpoint, DIR and --checkpoint together, log-only flags with
//     --checkpoint, append into an engine directory (P8);
//   - dump DIR on an engine directory dumps DIR/wal, and plain log directories
//     keep their old output.
// How: the log is written by the real `keel append`, the checkpoints by
// keel::checkpoint::CheckpointWriter directly (no engine), then the real
// binary runs on the directory, damaged byte by byte where needed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <keel/checkpoint/checkpoint.h>
#include <keel/checkpoint/format.h>
#include <keel/io/io.h>
#include "tests/test_util.h"
#include <keel/wal/format.h>

namespace keel {
namespace {

using ::keel::testing::CommandResult;
using ::keel::testing::ReadFileOrDie;
using ::keel::testing::RunCommand;
using ::keel::testing::TempDir;
using ::keel::testing::WriteFileOrDie;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const std::string kKeel = KEEL_BINARY_DIR "/tools/keel";
constexpr uint64_t kRecords = 200;
constexpr wal::Lsn kOlderLsn = 100;
constexpr wal::Lsn kNewerLsn = 200;
constexpr size_t kFrameRawBytes = 64 * 1024;
constexpr size_t kStateBytes = 5 * kFrameRawBytes + 1000;  // 5 full frames and a short sixth
const std::string kOlderName = checkpoint::CheckpointFileName(kOlderLsn);
const std::string kNewerName = checkpoint::CheckpointFileName(kNewerLsn);

CommandResult Keel(const std::string& args, const std::string& stdin_text = "") {
  return RunCommand(kKeel + " " + args, stdin_text);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Compressible but not trivial: what a key-value state looks like.
std::string StateBytes(wal::Lsn lsn) {
  std::string state;
  for (uint64_t i = 0; state.size() < kStateBytes; ++i) {
    state += "key-" + std::to_string(i * 7919 % 100003) + "=value-" + std::to_string(lsn) + "-" + std::to_string(i);
    state += "\n";
  }
  state.resize(kStateBytes);
  return state;
}

// Overwrites bytes of a file in place.
void PatchFile(const std::string& path, uint64_t offset, const std::string& bytes) {
  std::string content = ReadFileOrDie(path);
  ASSERT_LE(offset + bytes.size(), content.size());
  content.replace(offset, bytes.size(), bytes);
  WriteFileOrDie(path, content);
}

// Flips every bit of one byte.
void FlipByte(const std::string& path, uint64_t offset) {
  const std::string content = ReadFileOrDie(path);
  ASSERT_LT(offset, content.size());
  PatchFile(path, offset, std::string(1, static_cast<char>(~content[offset])));
}

// An engine directory as the engine leaves it: DIR/wal with records 1..200,
// DIR/checkpoints with checkpoints at LSN 100 and 200 (six frames each).
class CliCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(kKeel.c_str(), X_OK), 0) << kKeel << " is missing: build the keel target first";
    dir_ = tmp_.Join("engine");
    const CommandResult append = Keel("append " + wal_dir() + " --create --segment-size 64k --count " +
                                      std::to_string(kRecords) + " --size 100");
    ASSERT_EQ(append.exit_code, 0) << append.err;
    std::string notice;
    ASSERT_TRUE(io::OpenPosixFileSystem(io::Backend::kPortable, &fs_, &notice).ok());
    ASSERT_TRUE(fs_->CreateDir(checkpoint_dir()).ok());
    WriteCheckpoint(kOlderLsn);
    WriteCheckpoint(kNewerLsn);
  }

  void WriteCheckpoint(wal::Lsn lsn) {
    checkpoint::WriterOptions options;
    options.frame_raw_bytes = kFrameRawBytes;
    std::unique_ptr<checkpoint::CheckpointWriter> writer;
    ASSERT_TRUE(checkpoint::CheckpointWriter::Create(fs_.get(), checkpoint_dir(), lsn, 1, options, &writer).ok());
    const std::string state = StateBytes(lsn);
    ASSERT_TRUE(writer->Write(std::as_bytes(std::span(state.data(), state.size()))).ok());
    checkpoint::CheckpointInfo info;
    const Status status = writer->Commit(&info);
    ASSERT_TRUE(status.ok()) << status.message();
    ASSERT_EQ(info.frames, 6U);
  }

  std::string wal_dir() const { return dir_ + "/wal"; }
  std::string checkpoint_dir() const { return dir_ + "/checkpoints"; }
  std::string Checkpoint(const std::string& name) const { return checkpoint_dir() + "/" + name; }

  // `keel dump --checkpoint FILE --json` of an intact file.
  nlohmann::json DumpCheckpoint(const std::string& path) {
    const CommandResult result = Keel("dump --checkpoint " + path + " --json");
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return nlohmann::json::parse(result.out);
  }

  // Damages the zstd bytes of frame `index` of a checkpoint; returns the frame's offset.
  uint64_t DamageFrame(const std::string& path, size_t index) {
    const nlohmann::json dump = DumpCheckpoint(path);
    const uint64_t offset = dump["frame_table"][index]["offset"];
    FlipByte(path, offset + checkpoint::kFrameHeaderSize + 20);
    return offset;
  }

  TempDir tmp_;
  std::string dir_;
  std::unique_ptr<io::FileSystem> fs_;
};

// ---- verify (P4, P6) ----

TEST_F(CliCheckpointTest, P6VerifyCleanEngineDirListsBothCheckpointsAndExitsZero) {
  const CommandResult result = Keel("verify " + dir_);
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.err, "");  // quiet when piped: no progress line, nothing to note
  EXPECT_THAT(result.out, HasSubstr("log:        " + wal_dir()));
  EXPECT_THAT(result.out, HasSubstr("records:    200"));
  EXPECT_THAT(result.out, HasSubstr("OK: clean"));
  EXPECT_THAT(result.out, HasSubstr("checkpoints: 2 in " + checkpoint_dir()));
  const auto lines = Lines(result.out);
  std::vector<std::string> checkpoint_lines;
  for (const std::string& line : lines) {
    if (line.find(".ckpt") != std::string::npos) checkpoint_lines.push_back(line);
  }
  ASSERT_EQ(checkpoint_lines.size(), 2U);
  // Newest first, each with its LSN, sizes and verdict.
  EXPECT_THAT(checkpoint_lines[0], HasSubstr(kNewerName + "  LSN 200  raw " + std::to_string(kStateBytes) + " bytes"));
  EXPECT_THAT(checkpoint_lines[1], HasSubstr(kOlderName + "  LSN 100"));
  for (const std::string& line : checkpoint_lines) EXPECT_THAT(line, ::testing::EndsWith("  OK"));
  EXPECT_THAT(result.out, HasSubstr("OK: every checkpoint is intact"));

  const CommandResult json_result = Keel("verify " + dir_ + " --json");
  ASSERT_EQ(json_result.exit_code, 0) << json_result.err;
  const auto json = nlohmann::json::parse(json_result.out);
  EXPECT_EQ(json["ok"], true);
  EXPECT_EQ(json["log_ok"], true);
  EXPECT_EQ(json["checkpoints_ok"], true);
  EXPECT_EQ(json["engine"], true);
  EXPECT_EQ(json["records"], kRecords);
  ASSERT_EQ(json["checkpoints"].size(), 2U);
  EXPECT_EQ(json["checkpoints"][0]["name"], kNewerName);
  EXPECT_EQ(json["checkpoints"][0]["lsn"], kNewerLsn);
  EXPECT_EQ(json["checkpoints"][0]["ok"], true);
  EXPECT_EQ(json["checkpoints"][1]["lsn"], kOlderLsn);
  EXPECT_EQ(json["checkpoint_tmp_files"], nlohmann::json::array());

  // One file on its own.
  const CommandResult one = Keel("verify --checkpoint " + Checkpoint(kOlderName));
  EXPECT_EQ(one.exit_code, 0) << one.err;
  EXPECT_THAT(one.out, HasSubstr("OK: header, footer, every frame checksum and the whole-file hash match"));
}

TEST_F(CliCheckpointTest, P6FlippedByteInAFrameOfTheNewestNamesItAndTheOlderFallback) {
  const std::string path = Checkpoint(kNewerName);
  const uint64_t offset = DamageFrame(path, 3);

  const CommandResult result = Keel("verify " + dir_);
  EXPECT_EQ(result.exit_code, 1) << result.err;
  ASSERT_EQ(Lines(result.err).size(), 1U) << result.err;
  EXPECT_THAT(result.err, StartsWith("keel verify: checkpoint " + path + ": frame 3 at offset " +
                                     std::to_string(offset) + ": frame checksum mismatch"));
  EXPECT_THAT(result.err, HasSubstr("an older valid checkpoint exists: recovery would fall back to " + kOlderName +
                                    " (LSN 100)"));
  EXPECT_THAT(result.out, HasSubstr(kNewerName + "  LSN 200"));
  EXPECT_THAT(result.out, HasSubstr("CORRUPT: frame 3 at offset " + std::to_string(offset)));
  EXPECT_THAT(result.out, HasSubstr("OK: clean"));  // the log itself is fine

  const auto json = nlohmann::json::parse(Keel("verify " + dir_ + " --json").out);
  EXPECT_EQ(json["ok"], false);
  EXPECT_EQ(json["log_ok"], true);
  EXPECT_EQ(json["checkpoints_ok"], false);
  EXPECT_EQ(json["checkpoints"][0]["ok"], false);
  EXPECT_THAT(json["checkpoints"][0]["error"].get<std::string>(), HasSubstr("frame checksum mismatch"));
  EXPECT_THAT(json["checkpoints"][0]["recovery"].get<std::string>(), HasSubstr(kOlderName));
  EXPECT_EQ(json["checkpoints"][1]["ok"], true);

  const CommandResult one = Keel("verify --checkpoint " + path);
  EXPECT_EQ(one.exit_code, 1);
  EXPECT_THAT(one.err, HasSubstr("frame 3 at offset " + std::to_string(offset)));
}

TEST_F(CliCheckpointTest, P6DamagedOlderCheckpointIsReportedButRecoveryUsesTheNewer) {
  DamageFrame(Checkpoint(kOlderName), 0);
  const CommandResult result = Keel("verify " + dir_);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr(kOlderName));
  EXPECT_THAT(result.err, HasSubstr("recovery uses the newer valid checkpoint " + kNewerName));

  // Both damaged: the log starts at LSN 1, so recovery would replay it all.
  DamageFrame(Checkpoint(kNewerName), 5);
  const CommandResult both = Keel("verify " + dir_);
  EXPECT_EQ(both.exit_code, 1);
  EXPECT_EQ(Lines(both.err).size(), 2U) << both.err;
  EXPECT_THAT(both.err, HasSubstr("start from the empty state and replay the log from LSN 1"));
}

TEST_F(CliCheckpointTest, P6TruncatedCheckpointIsCorruptionEverywhere) {
  const std::string path = Checkpoint(kNewerName);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 10);
  const CommandResult verify = Keel("verify " + dir_);
  EXPECT_EQ(verify.exit_code, 1) << verify.err;
  EXPECT_THAT(verify.err, HasSubstr("checkpoint " + path + ": footer at offset"));
  EXPECT_THAT(verify.err, HasSubstr("truncated"));
  EXPECT_THAT(verify.err, HasSubstr("recovery would fall back to " + kOlderName));

  // info reads headers and footers, so it meets the damage too.
  const CommandResult info = Keel("info " + dir_);
  EXPECT_EQ(info.exit_code, 1);
  EXPECT_THAT(info.out, HasSubstr("DAMAGED"));
  EXPECT_THAT(info.err, HasSubstr(path));

  const CommandResult dump = Keel("dump --checkpoint " + path);
  EXPECT_EQ(dump.exit_code, 1);
  EXPECT_EQ(dump.out, "");
  EXPECT_THAT(dump.err, StartsWith("keel dump: checkpoint " + path + ": footer at offset"));

  // Cut to less than a header and a footer.
  std::filesystem::resize_file(path, 50);
  const CommandResult tiny = Keel("verify --checkpoint " + path);
  EXPECT_EQ(tiny.exit_code, 1);
  EXPECT_THAT(tiny.err, HasSubstr("shorter than a header and a footer"));
}

TEST_F(CliCheckpointTest, P8TmpLeftoverIsNotedButVerifyStillExitsZero) {
  const std::string leftover = checkpoint::CheckpointFileName(300) + ".tmp";
  WriteFileOrDie(Checkpoint(leftover), "half a checkpoint");
  const CommandResult result = Keel("verify " + dir_);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.err, HasSubstr("keel verify: note: "));
  EXPECT_THAT(result.err, HasSubstr(leftover));
  EXPECT_THAT(result.err, HasSubstr("not an error"));
  EXPECT_THAT(result.out, HasSubstr("checkpoints: 2 in"));

  const auto json = nlohmann::json::parse(Keel("verify " + dir_ + " --json").out);
  EXPECT_EQ(json["ok"], true);
  EXPECT_EQ(json["checkpoint_tmp_files"], nlohmann::json::array({leftover}));

  const auto info = nlohmann::json::parse(Keel("info " + dir_ + " --json").out);
  EXPECT_EQ(info["checkpoint_tmp_files"], nlohmann::json::array({leftover}));
}

// ---- info ----

TEST_F(CliCheckpointTest, InfoListsCheckpointsWithRatioAgeFramesAndQuarantine) {
  ASSERT_TRUE(fs_->CreateDir(dir_ + "/quarantine").ok());
  WriteFileOrDie(dir_ + "/quarantine/00000000000000000150.wal", std::string(1234, 'q'));

  const CommandResult result = Keel("info " + dir_ + " --json");
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto info = nlohmann::json::parse(result.out);
  EXPECT_EQ(info["engine"], true);
  EXPECT_EQ(info["wal_dir"], wal_dir());
  EXPECT_EQ(info["last_lsn"], kRecords);  // the log part, from DIR/wal
  ASSERT_EQ(info["checkpoints"].size(), 2U);
  for (const auto& checkpoint : info["checkpoints"]) {
    const std::string name = checkpoint["name"];
    const uint64_t file_bytes = std::filesystem::file_size(Checkpoint(name));
    EXPECT_EQ(checkpoint["epoch"], 1);
    EXPECT_EQ(checkpoint["raw_bytes"], kStateBytes);
    EXPECT_EQ(checkpoint["file_bytes"], file_bytes);
    EXPECT_EQ(checkpoint["compressed_bytes"],
              file_bytes - checkpoint::kHeaderSize - checkpoint::kFooterSize);
    EXPECT_DOUBLE_EQ(checkpoint["ratio"].get<double>(),
                     static_cast<double>(kStateBytes) / static_cast<double>(file_bytes));
    EXPECT_GT(checkpoint["ratio"].get<double>(), 2.0) << "the state is compressible";
    EXPECT_EQ(checkpoint["frames"], 6);
    EXPECT_GE(checkpoint["age_seconds"].get<int64_t>(), 0);
    EXPECT_LT(checkpoint["age_seconds"].get<int64_t>(), 600);
    EXPECT_EQ(checkpoint["ok"], true);
  }
  EXPECT_EQ(info["checkpoints"][0]["lsn"], kNewerLsn);
  EXPECT_EQ(info["checkpoints"][1]["lsn"], kOlderLsn);
  const nlohmann::json quarantine = {{{"name", "00000000000000000150.wal"}, {"bytes", 1234}}};
  EXPECT_EQ(info["quarantine"], quarantine);

  const CommandResult text = Keel("info " + dir_);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("engine directory: " + dir_));
  EXPECT_THAT(text.out, HasSubstr("directory:        " + wal_dir()));
  EXPECT_THAT(text.out, HasSubstr("checkpoints:      2 in " + checkpoint_dir()));
  EXPECT_THAT(text.out, HasSubstr("ratio"));
  EXPECT_THAT(text.out, HasSubstr("quarantine:       1 files (1234 bytes)"));
  bool newer_row = false;
  for (const std::string& line : Lines(text.out)) {
    if (line.find(kNewerName) == std::string::npos) continue;
    newer_row = true;
    EXPECT_THAT(line, HasSubstr(" 200 "));
    EXPECT_THAT(line, HasSubstr(std::to_string(kStateBytes)));
    EXPECT_THAT(line, ::testing::ContainsRegex("[0-9]+\\.[0-9][0-9]x"));
    EXPECT_THAT(line, ::testing::ContainsRegex(" [0-9]+s +6$"));  // age, then frames
  }
  EXPECT_TRUE(newer_row) << text.out;
}

// ---- dump --checkpoint ----

TEST_F(CliCheckpointTest, DumpCheckpointPrintsFieldsAndAFrameTableThatTilesTheFile) {
  const std::string path = Checkpoint(kNewerName);
  const nlohmann::json dump = DumpCheckpoint(path);
  EXPECT_EQ(dump["path"], path);
  EXPECT_EQ(dump["lsn"], kNewerLsn);
  EXPECT_EQ(dump["epoch"], 1);
  EXPECT_EQ(dump["raw_bytes"], kStateBytes);
  EXPECT_EQ(dump["frames"], 6);
  EXPECT_EQ(dump["ok"], true);
  EXPECT_TRUE(dump["created_unix_seconds"].is_number_integer());
  const auto& frames = dump["frame_table"];
  ASSERT_EQ(frames.size(), 6U);
  uint64_t offset = checkpoint::kHeaderSize;
  uint64_t raw = 0;
  for (size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(frames[i]["index"], i);
    EXPECT_EQ(frames[i]["offset"], offset) << "frame " << i;
    EXPECT_EQ(frames[i]["raw_bytes"], i < 5 ? kFrameRawBytes : kStateBytes - 5 * kFrameRawBytes);
    offset += checkpoint::kFrameHeaderSize + frames[i]["compressed_bytes"].get<uint64_t>();
    raw += frames[i]["raw_bytes"].get<uint64_t>();
  }
  EXPECT_EQ(offset + checkpoint::kFooterSize, std::filesystem::file_size(path));
  EXPECT_EQ(raw, kStateBytes);

  const CommandResult text = Keel("dump --checkpoint " + path);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("LSN:               200"));
  EXPECT_THAT(text.out, HasSubstr("frames:            6"));
  EXPECT_THAT(text.out, HasSubstr("raw / file bytes"));
  EXPECT_THAT(text.out, HasSubstr("offset"));
  EXPECT_THAT(text.out, ::testing::ContainsRegex("\n +0 +40 +65536 +[0-9]+\n"));
  EXPECT_THAT(text.out, HasSubstr("OK: header, footer, every frame checksum and the whole-file hash match"));
}

TEST_F(CliCheckpointTest, P6DumpOfADamagedCheckpointExitsOneWithTheReadersMessage) {
  const std::string path = Checkpoint(kNewerName);
  const uint64_t offset = DamageFrame(path, 2);
  const CommandResult text = Keel("dump --checkpoint " + path);
  EXPECT_EQ(text.exit_code, 1);
  EXPECT_EQ(text.err, "keel dump: checkpoint " + path + ": frame 2 at offset " + std::to_string(offset) +
                          ": frame checksum mismatch\n");
  EXPECT_THAT(text.out, HasSubstr("CORRUPT"));
  EXPECT_THAT(text.out, Not(HasSubstr("OK:")));

  const CommandResult json = Keel("dump --checkpoint " + path + " --json");
  EXPECT_EQ(json.exit_code, 1);
  const auto parsed = nlohmann::json::parse(json.out);
  EXPECT_EQ(parsed["ok"], false);
  EXPECT_THAT(parsed["error"].get<std::string>(), HasSubstr("frame 2"));
}

// ---- engine directories with the log commands, and bad input (P8) ----

TEST_F(CliCheckpointTest, DumpOfAnEngineDirDumpsItsLogAndPlainLogsAreUnchanged) {
  const CommandResult dump = Keel("dump " + dir_ + " --from 199");
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  EXPECT_EQ(Lines(dump.out).size(), 2U);
  EXPECT_THAT(dump.out, StartsWith("lsn=199 "));

  // DIR/wal named directly is a plain log: no checkpoint keys, as before.
  const CommandResult plain = Keel("verify " + wal_dir() + " --json");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const auto json = nlohmann::json::parse(plain.out);
  EXPECT_FALSE(json.contains("checkpoints"));
  EXPECT_EQ(json["dir"], wal_dir());
  EXPECT_THAT(Keel("verify " + wal_dir()).out, Not(HasSubstr("checkpoints")));
  EXPECT_FALSE(nlohmann::json::parse(Keel("info " + wal_dir() + " --json").out).contains("checkpoints"));
}

TEST_F(CliCheckpointTest, P8AppendRefusesAnEngineDirAndLeavesItAlone) {
  const CommandResult append = Keel("append " + dir_, "x\n");
  EXPECT_EQ(append.exit_code, 2);
  EXPECT_EQ(append.err, "keel append: " + dir_ + " is an engine directory; append to " + wal_dir() +
                            " only when no engine uses it\n");
  EXPECT_EQ(Keel("append " + dir_ + " --create", "x\n").exit_code, 2);
  EXPECT_THAT(Keel("verify " + dir_).out, HasSubstr("records:    200"));
}

TEST_F(CliCheckpointTest, P8CheckpointFlagErrorsExitTwoNamingFlagAndFile) {
  const std::string missing = tmp_.Join("nope.ckpt");
  for (const std::string command : {"verify", "dump"}) {
    const CommandResult result = Keel(command + " --checkpoint " + missing);
    EXPECT_EQ(result.exit_code, 2) << command;
    EXPECT_EQ(result.err, "keel " + command + ": --checkpoint " + missing + ": no such file\n");

    const CommandResult directory = Keel(command + " --checkpoint " + checkpoint_dir());
    EXPECT_EQ(directory.exit_code, 2) << command;
    EXPECT_THAT(directory.err,
                StartsWith("keel " + command + ": --checkpoint " + checkpoint_dir() + " is a directory"));

    const CommandResult both = Keel(command + " " + dir_ + " --checkpoint " + Checkpoint(kNewerName));
    EXPECT_EQ(both.exit_code, 2) << command;
    EXPECT_THAT(both.err, HasSubstr("not both"));

    const CommandResult neither = Keel(command);
    EXPECT_EQ(neither.exit_code, 2) << command;
    EXPECT_EQ(Lines(neither.err).size(), 1U);
  }
  for (const std::string flag : {"--from 3", "--to 9", "--limit 1", "--stats"}) {
    const CommandResult result = Keel("dump --checkpoint " + Checkpoint(kNewerName) + " " + flag);
    EXPECT_EQ(result.exit_code, 2) << flag;
    EXPECT_THAT(result.err, HasSubstr(flag.substr(0, flag.find(' ')) + " applies to a log"));
  }
  // A file that is not a checkpoint at all is corruption (bad magic), not a usage error.
  const std::string stranger = tmp_.Join("notes.txt");
  WriteFileOrDie(stranger, std::string(200, 'n'));
  const CommandResult result = Keel("verify --checkpoint " + stranger);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("bad magic"));
}

TEST_F(CliCheckpointTest, P8HelpMentionsCheckpointsAndEngineDirectories) {
  for (const std::string command : {"verify", "dump"}) {
    const CommandResult result = Keel(command + " --help");
    EXPECT_EQ(result.exit_code, 0) << command;
    EXPECT_THAT(result.out, HasSubstr("--checkpoint"));
    EXPECT_THAT(result.out, HasSubstr("engine directory"));
  }
  EXPECT_THAT(Keel("info --help").out, HasSubstr("checkpoints"));
  EXPECT_THAT(Keel("append --help").out, HasSubstr("engine directory"));
}

}  // namespace
}  // namespace keel
