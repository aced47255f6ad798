// e2e_protobuf.cpp: a C++ app linked with Debian's shared libprotobuf (the exec end-to-end test's
// check that the layer's own, hidden protobuf code cannot clash with an app's). It reads a file
// (a pod path under `mirrord exec`) into a build-time message (e2e_note.proto) holding a
// google.protobuf.Timestamp, serialises it, parses it back, and prints `key=value` lines
// including the JSON form (descriptor pool + reflection).
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "e2e_note.pb.h"

int main(int argc, char** argv) {
    GOOGLE_PROTOBUF_VERIFY_VERSION;
    const std::string path = argc > 1 ? argv[1] : "/app/hello.txt";
    std::ifstream in(path);
    if (!in) {
        std::cout << "error=cannot open " << path << "\n";
        return 1;
    }
    std::stringstream text;
    text << in.rdbuf();

    mirrord_e2e::Note note;
    note.set_text(text.str());
    *note.mutable_at() = google::protobuf::util::TimeUtil::SecondsToTimestamp(1700000000);
    note.mutable_at()->set_nanos(123456789);
    for (int i = 1; i <= 5; ++i) note.add_numbers(i * i);
    (*note.mutable_labels())["where"] = "laptop";

    std::string wire;
    if (!note.SerializeToString(&wire)) {
        std::cout << "error=serialize\n";
        return 1;
    }
    mirrord_e2e::Note back;
    if (!back.ParseFromString(wire)) {
        std::cout << "error=parse\n";
        return 1;
    }
    std::string json;
    google::protobuf::util::JsonPrintOptions opts;
    if (!google::protobuf::util::MessageToJsonString(back, &json, opts).ok()) {
        std::cout << "error=json\n";
        return 1;
    }
    std::string text_out = back.text();
    while (!text_out.empty() && text_out.back() == '\n') text_out.pop_back();
    std::cout << "text=" << text_out << "\n";
    std::cout << "timestamp=" << google::protobuf::util::TimeUtil::ToString(back.at()) << "\n";
    std::cout << "wire_bytes=" << wire.size() << "\n";
    std::cout << "equal=" << (back.SerializeAsString() == wire ? 1 : 0) << "\n";
    std::cout << "json=" << json << "\n";
    google::protobuf::ShutdownProtobufLibrary();
    return 0;
}
