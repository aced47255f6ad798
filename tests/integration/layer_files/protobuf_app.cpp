// protobuf_app.cpp: an app with its own (Debian) libprotobuf, run under the layer to show the
// layer's statically linked, hidden nanopb/C++ runtime does not clash with it.
#include <google/protobuf/timestamp.pb.h>

#include <iostream>

int main() {
    google::protobuf::Timestamp t;
    t.set_seconds(1234567);
    t.set_nanos(89);
    std::string wire = t.SerializeAsString();
    google::protobuf::Timestamp back;
    if (!back.ParseFromString(wire)) return 1;
    std::cout << "protobuf " << back.seconds() << "." << back.nanos() << std::endl;
    return 0;
}
