"""Getting data in: file readers, the sender behind `refinery send`, and the bundled data sets."""
