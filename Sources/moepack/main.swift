import ArgumentParser
print("moepack")
